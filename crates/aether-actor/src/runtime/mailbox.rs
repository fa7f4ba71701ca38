//! What travels through an actor's mailbox.

use tokio::sync::oneshot;

use super::AskResult;
use crate::effect::CallChain;
use crate::{Actor, ActorError, CommandId, OnConflict};

/// One message for an actor.
pub(crate) enum Envelope<A: Actor> {
    /// A command (from `ask` with a reply channel, from `tell` without).
    Command(CommandMsg<A>),
    /// A read-only query.
    Query {
        query: A::Query,
        reply: oneshot::Sender<Result<A::QueryReply, ActorError>>,
    },
    /// A plain timer of this activation fired (ignored unless `seq` is still its current one).
    Timer {
        name: String,
        seq: u64,
        command_id: CommandId,
        command: A::Command,
    },
    /// The reminder `name` is due (ignored unless the actor still has it, due by now).
    Reminder { name: String },
}

/// A command and how to answer it.
pub(crate) struct CommandMsg<A: Actor> {
    pub(crate) command_id: CommandId,
    pub(crate) command: A::Command,
    pub(crate) on_conflict: OnConflict,
    pub(crate) reply: Option<oneshot::Sender<AskResult<A>>>,
    /// The actors waiting for this command, when it comes from an effect's ask.
    pub(crate) chain: CallChain,
    /// The caller's trace context (current where the command was sent), if any: the
    /// command's span continues it and its events carry it.
    pub(crate) trace: Option<aether_core::TraceContext>,
}
