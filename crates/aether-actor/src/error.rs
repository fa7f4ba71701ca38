//! Errors: [`AskError`] (a rejection or an [`ActorError`]), [`ActorError`] (everything that
//! is not the actor's own answer) and [`ActivationError`].

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use aether_core::{ActorId, InvalidEvent, StoreError, Version};

use crate::CommandId;
use crate::codec::CodecError;

/// Why [`Actors::ask`](crate::Actors::ask) did not return an outcome: the actor's typed
/// rejection, or a failure of the runtime or the store.
///
/// # Examples
///
/// ```
/// use aether_actor::{ActorError, AskError};
///
/// fn advice<R>(err: &AskError<R>) -> &'static str {
///     match err {
///         AskError::Rejected(_) => "the actor said no: show the reason",
///         AskError::Failed(ActorError::Timeout { .. }) => "unknown outcome: retry with the same command id",
///         AskError::Failed(ActorError::Overloaded { .. }) => "not delivered: back off and retry",
///         AskError::Failed(ActorError::Conflict { .. }) => "someone else wrote: retry (decides on fresh state)",
///         AskError::Failed(_) => "see the message",
///     }
/// }
/// ```
#[derive(Debug, thiserror::Error)]
pub enum AskError<R> {
    /// The actor decided against the command; nothing was written.
    #[error("command rejected: {0:?}")]
    Rejected(R),
    /// The command did not reach a decision, or its events could not be stored.
    #[error(transparent)]
    Failed(#[from] ActorError),
}

impl<R> AskError<R> {
    /// The rejection, if the actor rejected the command.
    pub fn rejection(&self) -> Option<&R> {
        match self {
            Self::Rejected(r) => Some(r),
            Self::Failed(_) => None,
        }
    }

    /// The runtime failure, if it was not a rejection.
    pub fn failure(&self) -> Option<&ActorError> {
        match self {
            Self::Rejected(_) => None,
            Self::Failed(e) => Some(e),
        }
    }

    /// The rejection, or the runtime failure as an error: for callers that handle rejections
    /// as values and propagate failures with `?`.
    ///
    /// # Errors
    ///
    /// The [`ActorError`] if it was not a rejection.
    ///
    /// # Examples
    ///
    /// ```
    /// use aether_actor::{ActorError, AskError};
    ///
    /// let rejected: AskError<&str> = AskError::Rejected("overdraft");
    /// assert_eq!(rejected.into_rejection().unwrap(), "overdraft");
    /// let failed: AskError<&str> = AskError::Failed(ActorError::ShuttingDown);
    /// assert!(matches!(failed.into_rejection(), Err(ActorError::ShuttingDown)));
    /// ```
    pub fn into_rejection(self) -> Result<R, ActorError> {
        match self {
            Self::Rejected(r) => Ok(r),
            Self::Failed(e) => Err(e),
        }
    }
}

/// A failure of the actor runtime or of the store (not the actor's own rejection).
///
/// Whether a command's events may have been stored: never for the variants that say "nothing
/// was written"; possibly for [`Timeout`](Self::Timeout) and [`Store`](Self::Store) — retry
/// with the same [`CommandId`] and the actor answers the stored outcome if it was.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ActorError {
    /// The actor id is not valid for this actor type (for example `<type>.<id>` is longer
    /// than `ActorId::MAX_LEN`). Nothing was sent.
    #[error("invalid actor id {id:?}: {reason}")]
    InvalidActorId {
        /// The refused id (cut to 64 characters).
        id: String,
        /// Why.
        reason: String,
    },
    /// The command is larger than `ActorConfig::max_command_bytes`. Nothing was sent.
    #[error("command of at least {size} bytes is above the limit of {limit} bytes")]
    CommandTooLarge {
        /// Its JSON size (counting stopped just above the limit).
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The command could not be serialized (to measure it). Nothing was sent.
    #[error("command could not be serialized: {0}")]
    CommandEncode(String),
    /// The actor's mailbox is full. The command was not delivered and will not run.
    #[error(
        "actor {actor_id} is overloaded: its mailbox of {capacity} is full; nothing was delivered"
    )]
    Overloaded {
        /// The actor.
        actor_id: ActorId,
        /// Its mailbox capacity.
        capacity: usize,
    },
    /// The call's timeout passed before the answer came. The command may still run (or have
    /// run): retry with the same command id to learn its outcome without applying it twice.
    #[error(
        "no answer from actor {actor_id} within {after:?}{}; the outcome is unknown, retry with the same command id",
        command_id.as_ref().map(|c| format!(" for command {c}")).unwrap_or_default()
    )]
    Timeout {
        /// The actor.
        actor_id: ActorId,
        /// The command, for asks.
        command_id: Option<CommandId>,
        /// The timeout.
        after: Duration,
    },
    /// Another writer stored events the actor had not seen; nothing was written. The actor
    /// has reloaded its state: asking again decides on the fresh state.
    #[error(
        "version conflict on actor {actor_id}: wrote at {attempted_version}, but the store is at \
         {current_version}; nothing was written and the actor reloaded"
    )]
    Conflict {
        /// The actor.
        actor_id: ActorId,
        /// The version the actor tried to write (the first of the batch).
        attempted_version: Version,
        /// The store's current version.
        current_version: Version,
    },
    /// `decide` or `query` panicked on this message. Nothing was written; the actor keeps
    /// serving.
    #[error("the handler of actor {actor_id} panicked: {message}; nothing was written")]
    Panicked {
        /// The actor.
        actor_id: ActorId,
        /// The panic message.
        message: String,
    },
    /// `apply` panicked after the command's events were stored. The actor drops its state and
    /// reloads it before the next message (which will panic again until `apply` is fixed).
    #[error("apply panicked on actor {actor_id} after its events were stored: {message}")]
    ApplyPanicked {
        /// The actor.
        actor_id: ActorId,
        /// The panic message.
        message: String,
    },
    /// An event of the decision could not be encoded. Nothing was written.
    #[error("an event of actor {actor_id} could not be encoded: {source}; nothing was written")]
    EventEncode {
        /// The actor.
        actor_id: ActorId,
        /// Why.
        #[source]
        source: CodecError,
    },
    /// The store refused the decision's events as invalid (too large, bad type, too many).
    /// Nothing was written.
    #[error(
        "the events of actor {actor_id} were refused by the store: {source}; nothing was written"
    )]
    InvalidEvents {
        /// The actor.
        actor_id: ActorId,
        /// The rule they broke.
        #[source]
        source: InvalidEvent,
    },
    /// The actor could not be activated; nothing was decided.
    #[error(transparent)]
    Activation(#[from] ActivationError),
    /// The store failed. If it failed during a write, the outcome is unknown: the actor
    /// reloads before its next message, and a retry with the same command id answers the
    /// stored outcome if the write landed.
    #[error("store failure on actor {actor_id}: {source}")]
    Store {
        /// The actor.
        actor_id: ActorId,
        /// The store's error.
        #[source]
        source: Arc<StoreError>,
    },
    /// The command was already applied, but its stored reply does not decode as today's
    /// `Reply` type. Nothing was written.
    #[error(
        "command {command_id} was already applied, but its stored reply does not decode: {reason}"
    )]
    StoredReplyUndecodable {
        /// The command.
        command_id: CommandId,
        /// What serde said.
        reason: String,
    },
    /// An ask made by an effect would re-enter an actor that is waiting in the call chain
    /// (A asks B, whose effect asks A): it would wait for itself. Refused at once; nothing
    /// was delivered.
    #[error(
        "ask to actor {actor_id} refused: it is waiting in the call chain {chain:?} and would wait for itself"
    )]
    Reentrant {
        /// The actor the ask was for.
        actor_id: ActorId,
        /// The actors waiting, outermost first, as `<namespace>/<actor type>.<actor id>`.
        chain: Vec<String>,
    },
    /// The decision's effects cannot be carried out (an invalid timer or reminder name, a
    /// reminder on a decision that stores no events). Nothing was written.
    #[error("invalid effects from actor {actor_id}: {reason}; nothing was written")]
    InvalidEffect {
        /// The actor.
        actor_id: ActorId,
        /// Why.
        reason: String,
    },
    /// The runtime is shutting down and takes no new messages.
    #[error("the actor runtime is shutting down")]
    ShuttingDown,
    /// Across a cluster: no node owns the actor's shard in the newest placement this node
    /// has seen, until the call's deadline. Nothing was delivered.
    #[error(
        "no node owns the shard {shard} of actor {actor_id} (placement version {map_version}); nothing was delivered"
    )]
    NoOwner {
        /// The actor.
        actor_id: ActorId,
        /// Its shard.
        shard: u32,
        /// The newest placement version seen.
        map_version: u64,
    },
    /// Across a cluster: the node that serves the actor answered with an error (its kind and
    /// message, as in the wire format's `error` reply).
    #[error("node {node} answered for actor {actor_id}: {kind}: {message}")]
    Remote {
        /// The actor.
        actor_id: ActorId,
        /// The node that answered.
        node: String,
        /// The error's kind (`invalid`, `overloaded`, `conflict`, `unavailable`, `internal`).
        kind: String,
        /// Its message.
        message: String,
    },
    /// The actor stopped without answering (its task ended). The outcome is unknown.
    #[error("actor {actor_id} stopped without answering; the outcome is unknown")]
    Stopped {
        /// The actor.
        actor_id: ActorId,
    },
}

impl ActorError {
    /// True if the command may have been applied although no outcome was returned: retry with
    /// the same command id to find out. A store that could not be reached or failed
    /// (`Unavailable`, `Backend`) leaves the outcome unknown; a store that refused the write
    /// (a reused event id, invalid events, an undecodable record) did not apply it, and
    /// retrying would fail the same way.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::Stopped { .. } => true,
            // The owner's own error kinds; `internal` and `unavailable` may follow a write.
            Self::Remote { kind, .. } => kind == "internal" || kind == "unavailable",
            Self::Store { source, .. } => matches!(
                source.as_ref(),
                StoreError::Unavailable { .. } | StoreError::Backend { .. }
            ),
            _ => false,
        }
    }
}

/// Why an actor could not be activated. The actor stays inactive (never a partial state);
/// the next message tries again.
#[derive(Debug, Clone, thiserror::Error)]
#[error("activation of actor {actor_id} failed: {reason}")]
pub struct ActivationError {
    /// The actor (as the user names it, without the type prefix).
    pub actor_id: ActorId,
    /// Why.
    pub reason: ActivationFailure,
}

/// The reason in an [`ActivationError`].
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ActivationFailure {
    /// A record on the actor's stream is not a valid event.
    #[error("the record at position {position} is not an event: {error}")]
    UndecodableRecord {
        /// Its position in the store (JetStream: stream sequence).
        position: u64,
        /// The decoding error.
        error: String,
    },
    /// A stored event does not decode (after upcasting) as the actor's event type.
    #[error("event version {version} does not decode: {source}")]
    UndecodableEvent {
        /// Its version.
        version: Version,
        /// Why.
        #[source]
        source: CodecError,
    },
    /// The snapshot does not decode as the actor's state.
    #[error("the snapshot at version {version} does not decode: {reason}")]
    UndecodableSnapshot {
        /// Its version.
        version: Version,
        /// What serde said.
        reason: String,
    },
    /// `apply` panicked while replaying.
    #[error("apply panicked on event version {version}: {message}")]
    ApplyPanicked {
        /// The event's version.
        version: Version,
        /// The panic message.
        message: String,
    },
    /// The store failed to load the actor.
    #[error("the store failed: {0}")]
    Store(Arc<StoreError>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(source: StoreError) -> ActorError {
        ActorError::Store {
            actor_id: ActorId::new("a").unwrap(),
            source: Arc::new(source),
        }
    }

    /// A refused write is a known outcome: retrying it would loop forever on the same refusal.
    #[test]
    fn only_an_unreachable_or_failing_store_leaves_the_outcome_unknown() {
        let unavailable = StoreError::Unavailable {
            message: "no answer".into(),
            source: None,
        };
        assert!(store(unavailable).outcome_unknown());
        let reused = StoreError::EventIdReused {
            id: aether_core::EventId::new("c.0").unwrap(),
            existing_actor: ActorId::new("b").unwrap(),
            existing_version: 1,
        };
        assert!(!store(reused).outcome_unknown());
        assert!(!store(StoreError::InvalidEvent(InvalidEvent::EmptyEventType)).outcome_unknown());
        assert!(
            ActorError::Timeout {
                actor_id: ActorId::new("a").unwrap(),
                command_id: None,
                after: Duration::from_secs(1),
            }
            .outcome_unknown()
        );
    }
}
