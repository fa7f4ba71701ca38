//! [`StoreError`]: one error type for every store, keeping domain outcomes (conflicts), bad input
//! and infrastructure failures apart so callers can branch without matching strings.

use super::OwnerEpoch;
use crate::{ActorId, EventId, Version};

/// A boxed error from an underlying system (network client, filesystem, …).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a store operation failed.
///
/// # Examples
///
/// Branching on the outcome:
///
/// ```
/// use aether_core::{ErrorKind, StoreError};
///
/// fn describe(err: &StoreError) -> &'static str {
///     match err {
///         StoreError::VersionConflict { .. } => "re-read the actor and decide again",
///         e if e.kind() == ErrorKind::InvalidInput => "fix the request",
///         _ => "retry later",
///     }
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another event already holds this version or a later one: the caller's view of the actor
    /// is stale. Nothing was written. Re-read, decide again, retry with a version above
    /// `current_version`.
    #[error(
        "version conflict on actor {actor_id}: attempted version {attempted_version}, but the \
         current version is {current_version}; re-read and retry above {current_version}"
    )]
    VersionConflict {
        /// The actor whose stream was written.
        actor_id: ActorId,
        /// The version the caller tried to write (the first of a batch).
        attempted_version: Version,
        /// The actor's actual current version.
        current_version: Version,
    },
    /// The event id already identifies a different event (another actor or version). Ids are
    /// deduplication keys, so each may name only one event. Nothing was written.
    #[error(
        "event id {id} is already used by version {existing_version} of actor {existing_actor}; \
         an event id may identify only one event"
    )]
    EventIdReused {
        /// The reused id.
        id: EventId,
        /// The actor of the event that holds the id.
        existing_actor: ActorId,
        /// The version of the event that holds the id.
        existing_version: Version,
    },
    /// A newer owner fenced the actor: the head of its stream carries the ownership epoch
    /// `fenced_by`, above the writer's `epoch` (0 for a write without one). Nothing was
    /// written, and the store never re-sends past a fence.
    ///
    /// A definite outcome, like a version conflict, not a failure: the writer no longer owns
    /// the actor. Stop writing to it (passivate it) and let the owner at `fenced_by` serve it;
    /// retrying with the same epoch fails the same way.
    #[error(
        "actor {actor_id} is fenced: its owner's epoch is {fenced_by}, above this writer's \
         epoch {epoch}; nothing was written: this node no longer owns the actor, so route its \
         commands to the current owner"
    )]
    Fenced {
        /// The fenced actor.
        actor_id: ActorId,
        /// The writer's epoch.
        epoch: OwnerEpoch,
        /// The epoch of the actor's head, which fenced the write.
        fenced_by: OwnerEpoch,
    },
    /// The event or batch broke an input rule. Nothing was written.
    #[error("invalid event: {0}")]
    InvalidEvent(#[from] InvalidEvent),
    /// The snapshot broke an input rule. Nothing was written.
    #[error("invalid snapshot: {0}")]
    InvalidSnapshot(#[from] InvalidSnapshot),
    /// A store setting that cannot work (named, with the reason). Nothing was opened or
    /// written.
    #[error("invalid store configuration: {0}")]
    InvalidConfig(String),
    /// A record on the actor's stream claims a version (or sits where the actor's head is) but
    /// does not decode as an event of this build, for example one written by a newer version or
    /// by a foreign client. The store fails closed: it will not write over a version it cannot
    /// read, nor report a current version that may be wrong. Nothing was written. An operator
    /// must upgrade this build or repair the stream; retrying does not help.
    #[error(
        "actor {actor_id} has a record at position {position} that this build cannot decode \
         ({reason}){}; the store refuses to write or report a version over it",
        claimed_version.map(|v| format!(", claiming version {v}")).unwrap_or_default()
    )]
    UndecodableRecord {
        /// The actor whose stream holds the record.
        actor_id: ActorId,
        /// Where the record sits: the stream sequence for JetStream, the 1-based position in
        /// the actor's log for the in-memory store.
        position: u64,
        /// The version the record's metadata claims, if any.
        claimed_version: Option<Version>,
        /// Why it could not be decoded.
        reason: String,
    },
    /// The store cannot be reached right now (connection lost, no leader, timeout). The outcome
    /// of a write that failed this way is unknown only if the message says so.
    #[error("event store unavailable: {message}")]
    Unavailable {
        /// What was unavailable, e.g. which server URL.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The server refused this connection's user the subject an operation needs (NATS
    /// permissions): nothing was written, and retrying fails the same way. Grant the
    /// permission (see `docs/permissions.md`) or connect as a user that has it.
    #[error(
        "permission denied: the server does not let this user {action} {subject:?} \
         (see docs/permissions.md)"
    )]
    PermissionDenied {
        /// What was refused: `publish to` or `subscribe to`.
        action: String,
        /// The subject refused.
        subject: String,
    },
    /// The underlying system failed in a way that retrying will not fix by itself.
    #[error("event store failure: {message}")]
    Backend {
        /// What failed.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
}

impl crate::BackendError for StoreError {
    /// The message says what was being done and what the cause said.
    fn from_backend(message: String, source: BoxError) -> Self {
        Self::Backend {
            message: format!("{message}: {source}"),
            source: Some(source),
        }
    }
}

/// The three families of [`StoreError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A domain outcome: version conflict, reused event id, or a write fenced by a newer
    /// owner. Nothing was written.
    Conflict,
    /// Bad input: nothing was written and retrying the same request fails the same way.
    InvalidInput,
    /// The store itself failed, could not be reached, or holds a record it cannot read
    /// ([`StoreError::UndecodableRecord`]).
    Infrastructure,
}

impl StoreError {
    /// Which family this error belongs to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::VersionConflict { .. } | Self::EventIdReused { .. } | Self::Fenced { .. } => {
                ErrorKind::Conflict
            }
            Self::InvalidEvent(_) | Self::InvalidSnapshot(_) | Self::InvalidConfig(_) => {
                ErrorKind::InvalidInput
            }
            Self::Unavailable { .. }
            | Self::Backend { .. }
            | Self::UndecodableRecord { .. }
            | Self::PermissionDenied { .. } => ErrorKind::Infrastructure,
        }
    }

    /// True for [`StoreError::VersionConflict`].
    pub fn is_version_conflict(&self) -> bool {
        matches!(self, Self::VersionConflict { .. })
    }

    /// True for [`StoreError::Fenced`]: a newer owner fenced the actor and nothing was
    /// written.
    pub fn is_fenced(&self) -> bool {
        matches!(self, Self::Fenced { .. })
    }

    /// The actor's current version, if this is a version conflict.
    pub fn current_version(&self) -> Option<Version> {
        match self {
            Self::VersionConflict {
                current_version, ..
            } => Some(*current_version),
            _ => None,
        }
    }
}

/// An input rule an event or batch broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidEvent {
    /// `event_type` is empty.
    #[error("event type must not be empty")]
    EmptyEventType,
    /// `event_type` is longer than the limit.
    #[error("event type is {len} bytes long; the limit is {max} bytes")]
    EventTypeTooLong {
        /// Length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// `event_type` contains whitespace or a control character.
    #[error(
        "event type {event_type:?} contains {ch:?} at byte {index}; use printable characters without whitespace"
    )]
    EventTypeForbiddenChar {
        /// The rejected type.
        event_type: String,
        /// The offending character.
        ch: char,
        /// Its byte offset.
        index: usize,
    },
    /// Version 0, which means "no events yet" and cannot be stored.
    #[error("version must be at least 1 (0 means \"no events yet\")")]
    ZeroVersion,
    /// The event encodes to more bytes than the store accepts.
    #[error("event encodes to {size} bytes of JSON; the limit is {limit} bytes")]
    TooLarge {
        /// Encoded size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// A batch with no events.
    #[error("a batch must contain at least one event")]
    EmptyBatch,
    /// A batch with more events than the store accepts at once.
    #[error("a batch holds {len} events; the limit is {max}")]
    BatchTooLong {
        /// Number of events in the batch.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A batch containing events of more than one actor.
    #[error(
        "a batch must concern one actor: event {index} is for {found}, the batch for {expected}"
    )]
    MixedActors {
        /// Index of the first event of another actor.
        index: usize,
        /// The batch's actor (that of event 0).
        expected: crate::ActorId,
        /// The other actor.
        found: crate::ActorId,
    },
    /// Versions within a batch that do not strictly increase.
    #[error(
        "versions in a batch must strictly increase: event {index} has version {version} after {previous}"
    )]
    NonIncreasingVersions {
        /// Index of the offending event.
        index: usize,
        /// Its version.
        version: Version,
        /// The version of the event before it.
        previous: Version,
    },
    /// The same event id twice in one batch.
    #[error("event id {id} appears twice in the batch (events {first} and {second})")]
    DuplicateIdInBatch {
        /// The repeated id.
        id: crate::EventId,
        /// Index of its first occurrence.
        first: usize,
        /// Index of its second occurrence.
        second: usize,
    },
    /// One event of a batch is invalid.
    #[error("event {index} of the batch: {reason}")]
    InBatch {
        /// Index of the invalid event.
        index: usize,
        /// What is wrong with it.
        reason: Box<Self>,
    },
}

/// An input rule a snapshot broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidSnapshot {
    /// Version 0: a snapshot must cover at least one event.
    #[error("snapshot version must be at least 1")]
    ZeroVersion,
    /// The snapshot claims to cover events that are not stored.
    #[error(
        "snapshot of actor {actor_id} is at version {version}, but the actor's latest stored version is {latest}"
    )]
    AheadOfEvents {
        /// The actor.
        actor_id: crate::ActorId,
        /// The snapshot's version.
        version: Version,
        /// The actor's latest stored version.
        latest: Version,
    },
    /// The snapshot encodes to more bytes than the store accepts.
    #[error("snapshot encodes to {size} bytes of JSON; the limit is {limit} bytes")]
    TooLarge {
        /// Encoded size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
}
