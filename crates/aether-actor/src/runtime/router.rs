//! Where a runtime sends what its actors address to other actors of the same type — the
//! effects `then_tell_peer`/`then_ask_peer`, and due reminders — when it is one node of a
//! cluster: a [`Router`] installed by the node, which sends each to the node serving the
//! actor's shard. Without one (a runtime on its own), they go to this runtime.

use aether_core::ActorId;
use futures::future::BoxFuture;

use crate::effect::CallChain;
use crate::runtime::AskResult;
use crate::{Actor, ActorError, CommandId};

/// Sends to the actor wherever it is served. The node's own calls to actors it serves come
/// back to the runtime by its `*_here` paths, never through the router again.
pub(crate) trait Router<A: Actor>: Send + Sync + 'static {
    /// An ask made by an effect: the derived command id and the call chain travel with it.
    fn ask(
        &self,
        actor_id: ActorId,
        command: A::Command,
        command_id: CommandId,
        chain: CallChain,
    ) -> BoxFuture<'static, AskResult<A>>;

    /// A tell made by an effect, with its derived command id.
    fn tell(
        &self,
        actor_id: ActorId,
        command: A::Command,
        command_id: CommandId,
    ) -> BoxFuture<'static, Result<(), ActorError>>;

    /// The reminder `name` of `actor_id` is due here: wake the actor where it is served (it
    /// fires the reminder if its own table still holds it due).
    fn remind(&self, actor_id: ActorId, name: String)
    -> BoxFuture<'static, Result<(), ActorError>>;
}
