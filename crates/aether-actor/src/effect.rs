//! Effects: what a [`Decision`] asks the runtime to do *after* its events are stored — tell or
//! ask other actors, start or cancel a timer, set or cancel a reminder.
//!
//! [`Actor::decide`] stays synchronous and pure: it only *declares* effects on the decision it
//! returns ([`Decision::then_tell`], [`then_ask`](Decision::then_ask), …). The runtime runs them
//! in the actor's task once the events are stored, in the order declared, before the actor's
//! next message (and before the caller gets its outcome). See the crate docs and ADR 0008 for
//! reentrancy, exactly-once and timers versus reminders.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aether_core::{ActorId, SnapshotStore};
use futures::future::BoxFuture;

use crate::{Actor, ActorError, Actors, AskResult, CommandId, Decision};

/// Keeps [`Recipient`] implemented only here.
pub(crate) mod sealed {
    pub trait Sealed {}
}

/// What a send effect gives back to the deciding actor: an optional follow-up command for
/// itself and, if the send failed, why.
pub(crate) struct Sent<A: Actor + ?Sized> {
    pub(crate) follow_up: Option<A::Command>,
    pub(crate) failure: Option<ActorError>,
}

/// A tell or ask to an actor of another type (or the same type in another runtime), with the
/// handle captured: called with the effect's derived command id and the call chain.
pub(crate) type SendFn<A> =
    Box<dyn FnOnce(CommandId, CallChain) -> BoxFuture<'static, Sent<A>> + Send>;

/// What to do with the result of an ask to a peer (an actor of the same type and runtime).
pub(crate) type PeerThen<A> = Box<dyn FnOnce(AskResult<A>) -> Option<<A as Actor>::Command> + Send>;

/// One effect of a decision.
pub(crate) enum Effect<A: Actor + ?Sized> {
    Send(SendFn<A>),
    Peer {
        actor_id: ActorId,
        command: A::Command,
        then: Option<PeerThen<A>>,
    },
    StartTimer {
        name: String,
        after: Duration,
        command: A::Command,
    },
    CancelTimer {
        name: String,
    },
    SetReminder {
        name: String,
        after: Duration,
    },
    CancelReminder {
        name: String,
    },
}

impl<A: Actor + ?Sized> fmt::Debug for Effect<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Send(_) => f.write_str("Send"),
            Self::Peer { actor_id, then, .. } => f
                .debug_struct("Peer")
                .field("actor_id", actor_id)
                .field("ask", &then.is_some())
                .finish_non_exhaustive(),
            Self::StartTimer { name, after, .. } => f
                .debug_struct("StartTimer")
                .field("name", name)
                .field("after", after)
                .finish_non_exhaustive(),
            Self::CancelTimer { name } => {
                f.debug_struct("CancelTimer").field("name", name).finish()
            }
            Self::SetReminder { name, after } => f
                .debug_struct("SetReminder")
                .field("name", name)
                .field("after", after)
                .finish(),
            Self::CancelReminder { name } => f
                .debug_struct("CancelReminder")
                .field("name", name)
                .finish(),
        }
    }
}

/// A handle that a decision's effects ([`Decision::then_tell`], [`Decision::then_ask`]) can
/// address: [`Actors`] on one node, and `ClusterActors` (feature `cluster`), which sends to
/// whichever node serves the actor. The same decision works with either. Sealed: implemented
/// by this crate's handles only.
pub trait Recipient: Clone + Send + Sync + 'static + sealed::Sealed {
    /// The actor type the handle addresses.
    type Actor: Actor;

    /// Sends an effect's ask (runtime internals).
    #[doc(hidden)]
    fn effect_ask(
        &self,
        actor_id: ActorId,
        command: <Self::Actor as Actor>::Command,
        call: EffectCall,
    ) -> BoxFuture<'static, AskResult<Self::Actor>>;

    /// Sends an effect's tell (runtime internals).
    #[doc(hidden)]
    fn effect_tell(
        &self,
        actor_id: ActorId,
        command: <Self::Actor as Actor>::Command,
        call: EffectCall,
    ) -> BoxFuture<'static, Result<(), ActorError>>;
}

/// What an effect's message carries besides the command: its derived command id and the call
/// chain (runtime internals).
#[doc(hidden)]
#[derive(Debug)]
pub struct EffectCall {
    pub(crate) command_id: CommandId,
    pub(crate) chain: CallChain,
}

impl<B: Actor, S: SnapshotStore + 'static> sealed::Sealed for Actors<B, S> {}

impl<B: Actor, S: SnapshotStore + 'static> Recipient for Actors<B, S> {
    type Actor = B;

    fn effect_ask(
        &self,
        actor_id: ActorId,
        command: B::Command,
        call: EffectCall,
    ) -> BoxFuture<'static, AskResult<B>> {
        let to = self.clone();
        Box::pin(async move {
            to.ask_effect(&actor_id, command, call.command_id, call.chain)
                .await
        })
    }

    fn effect_tell(
        &self,
        actor_id: ActorId,
        command: B::Command,
        call: EffectCall,
    ) -> BoxFuture<'static, Result<(), ActorError>> {
        let to = self.clone();
        Box::pin(async move { to.tell_effect(&actor_id, command, call.command_id).await })
    }
}

/// The actors waiting, each for the next, in a chain of asks made by effects (as
/// `<namespace>/<actor type>.<actor id>`). An ask to an actor already in the chain would wait
/// for itself: it is refused with [`ActorError::Reentrant`].
#[derive(Debug, Clone, Default)]
pub(crate) struct CallChain(Option<Arc<[Arc<str>]>>);

impl CallChain {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|c| c.is_empty())
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.0.iter().flat_map(|c| c.iter()).any(|k| &**k == key)
    }

    /// This chain followed by `key`.
    pub(crate) fn with(&self, key: Arc<str>) -> Self {
        let mut keys: Vec<Arc<str>> = self.0.iter().flat_map(|c| c.iter().cloned()).collect();
        keys.push(key);
        Self(Some(keys.into()))
    }

    /// A chain received from another node (its keys, oldest first).
    #[cfg(feature = "cluster")]
    pub(crate) fn from_keys(keys: Vec<String>) -> Self {
        if keys.is_empty() {
            return Self::default();
        }
        Self(Some(keys.into_iter().map(Arc::from).collect()))
    }

    pub(crate) fn to_strings(&self) -> Vec<String> {
        self.0
            .iter()
            .flat_map(|c| c.iter().map(|k| k.to_string()))
            .collect()
    }
}

/// Names of timers and reminders: 1 to [`MAX_NAME_LEN`] characters of `[A-Za-z0-9_.-]`.
pub const MAX_NAME_LEN: usize = 64;

pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "timer or reminder name {:?} must be 1 to {MAX_NAME_LEN} characters",
            name.chars().take(MAX_NAME_LEN).collect::<String>()
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(format!(
            "timer or reminder name {name:?} must be of [A-Za-z0-9_.-]"
        ));
    }
    Ok(())
}

impl<A: Actor + ?Sized> Decision<A> {
    fn effect(mut self, effect: Effect<A>) -> Self {
        self.effects.push(effect);
        self
    }

    /// After the events are stored, tell `command` to `actor_id` of another actor type (through
    /// its handle `to`, which the behaviour holds): fire and forget.
    ///
    /// The command's id is derived from the deciding command's id (`<id>.e<index>`, see
    /// [`CommandId::derived`]), so that the target applies it at most once. A tell that cannot
    /// be delivered (full mailbox, invalid id, …) is counted in
    /// [`ActorStats::effect_failures`](crate::ActorStats) and logged; the deciding actor keeps
    /// serving.
    ///
    /// # Examples
    ///
    /// See the crate docs ("Actors talking to actors").
    pub fn then_tell<R: Recipient>(
        self,
        to: &R,
        actor_id: ActorId,
        command: <R::Actor as Actor>::Command,
    ) -> Self {
        let to = to.clone();
        self.effect(Effect::Send(Box::new(move |command_id, chain| {
            Box::pin(async move {
                let failure = to
                    .effect_tell(actor_id, command, EffectCall { command_id, chain })
                    .await
                    .err();
                Sent {
                    follow_up: None,
                    failure,
                }
            })
        })))
    }

    /// After the events are stored, ask `command` of `actor_id` of another actor type (through
    /// its handle `to`), wait for the result, and hand it to `then`, which may return a
    /// follow-up command for this actor (Akka's `context.ask` with a response adapter). The
    /// follow-up is handled right away, in the same turn (id `<id>.e<index>.r`).
    ///
    /// The ask carries a derived command id (`<id>.e<index>`) and the call chain: if `actor_id`
    /// is already waiting in the chain (A asks B, whose effect asks A), the ask fails at once
    /// with [`ActorError::Reentrant`] instead of waiting for itself. Failures (not rejections)
    /// are counted in [`ActorStats::effect_failures`](crate::ActorStats) and logged; `then`
    /// still gets the error.
    ///
    /// # Examples
    ///
    /// See the crate docs ("Actors talking to actors").
    pub fn then_ask<R, F>(
        self,
        to: &R,
        actor_id: ActorId,
        command: <R::Actor as Actor>::Command,
        then: F,
    ) -> Self
    where
        R: Recipient,
        F: FnOnce(AskResult<R::Actor>) -> Option<A::Command> + Send + 'static,
    {
        let to = to.clone();
        self.effect(Effect::Send(Box::new(move |command_id, chain| {
            Box::pin(async move {
                let result = to
                    .effect_ask(actor_id, command, EffectCall { command_id, chain })
                    .await;
                let failure = result.as_ref().err().and_then(|e| e.failure().cloned());
                Sent {
                    follow_up: then(result),
                    failure,
                }
            })
        })))
    }

    /// [`then_tell`](Self::then_tell) to an actor of the same type in the same runtime (no
    /// handle needed).
    pub fn then_tell_peer(self, actor_id: ActorId, command: A::Command) -> Self {
        self.effect(Effect::Peer {
            actor_id,
            command,
            then: None,
        })
    }

    /// [`then_ask`](Self::then_ask) to an actor of the same type in the same runtime. Asking
    /// oneself (or an actor waiting in the chain) fails with [`ActorError::Reentrant`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use aether_actor::{Actor, ActorConfig, Actors, Decision};
    /// # use aether_core::{ActorId, InMemoryEventStore, Namespace};
    /// # use serde::{Deserialize, Serialize};
    /// # use std::time::Duration;
    /// struct Counter;
    ///
    /// #[derive(Debug, Clone, Serialize, Deserialize)]
    /// enum Cmd { Add(u64), Pull { from: String }, Got(u64), Later(u64) }
    ///
    /// #[derive(Debug, Serialize, Deserialize)]
    /// enum Ev { Added { n: u64 }, Pulled, Reminded }
    ///
    /// impl Actor for Counter {
    ///     const ACTOR_TYPE: &'static str = "counter";
    ///     type State = u64; type Command = Cmd; type Event = Ev; type Reply = u64;
    ///     type Rejection = String; type Query = (); type QueryReply = u64;
    ///
    ///     fn decide(&self, total: &u64, cmd: Cmd) -> Result<Decision<Self>, String> {
    ///         Ok(match cmd {
    ///             Cmd::Add(n) | Cmd::Got(n) => Decision::new(vec![Ev::Added { n }], total + n),
    ///             // Ask a peer for its total (adding 0); its answer comes back as `Got`.
    ///             Cmd::Pull { from } => Decision::new(vec![Ev::Pulled], *total).then_ask_peer(
    ///                 ActorId::new(from).map_err(|e| e.to_string())?,
    ///                 Cmd::Add(0),
    ///                 |result| result.ok().map(|outcome| Cmd::Got(outcome.reply)),
    ///             ),
    ///             // Persisted: `remind` is called when it is due, even after a passivation.
    ///             Cmd::Later(ms) => Decision::new(vec![Ev::Reminded], *total)
    ///                 .set_reminder("bonus", Duration::from_millis(ms)),
    ///         })
    ///     }
    ///     fn apply(&self, total: &mut u64, ev: &Ev) {
    ///         if let Ev::Added { n } = ev { *total += n }
    ///     }
    ///     fn query(&self, total: &u64, (): ()) -> u64 { *total }
    ///     fn remind(&self, _: &u64, name: &str) -> Option<Cmd> {
    ///         (name == "bonus").then_some(Cmd::Add(1))
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let counters = Actors::new(Namespace::new("demo")?, Counter, InMemoryEventStore::new(), ActorConfig::default())?;
    /// let (a, b) = (ActorId::new("a")?, ActorId::new("b")?);
    /// counters.ask(&a, Cmd::Add(5)).await?;
    /// counters.ask(&b, Cmd::Pull { from: "a".into() }).await?;
    /// // The answer was handled in b's turn, before b's outcome returned.
    /// assert_eq!(counters.query(&b, ()).await?, 5);
    ///
    /// // a asking itself would wait for itself: refused, counted; `then` gets the error.
    /// counters.ask(&a, Cmd::Pull { from: "a".into() }).await?;
    /// assert_eq!(counters.stats().effect_failures, 1);
    /// assert_eq!(counters.query(&a, ()).await?, 5);
    /// # Ok(())
    /// # }
    /// ```
    pub fn then_ask_peer<F>(self, actor_id: ActorId, command: A::Command, then: F) -> Self
    where
        A: Sized,
        F: FnOnce(AskResult<A>) -> Option<A::Command> + Send + 'static,
    {
        self.effect(Effect::Peer {
            actor_id,
            command,
            then: Some(Box::new(then)),
        })
    }

    /// After the events are stored, start a plain timer: `command` is sent to this actor after
    /// `after` (id `<id>.t<index>`), unless the timer is cancelled or replaced (same `name`)
    /// first.
    ///
    /// Timers live in memory, in this activation only: **a passivation, a shutdown or a
    /// restart drops them** (as Orleans timers and Akka timers). Use a reminder to survive
    /// them. A timer never activates an actor. An invalid name (see [`MAX_NAME_LEN`]) fails
    /// the command with [`ActorError::InvalidEffect`]; nothing is written.
    pub fn start_timer(
        self,
        name: impl Into<String>,
        after: Duration,
        command: A::Command,
    ) -> Self {
        self.effect(Effect::StartTimer {
            name: name.into(),
            after,
            command,
        })
    }

    /// Cancels the timer `name` after the events are stored (nothing if there is none). A
    /// cancelled timer's command is never handled, even if it already fired.
    pub fn cancel_timer(self, name: impl Into<String>) -> Self {
        self.effect(Effect::CancelTimer { name: name.into() })
    }

    /// Sets the reminder `name` due `after` from now (replacing one of the same name): when due,
    /// the runtime calls [`Actor::remind`] on the actor's state and handles the command it
    /// returns.
    ///
    /// Reminders are **persisted** with this decision's events (atomically: the reminder exists
    /// exactly when the events are stored), kept in snapshots, and survive passivation and
    /// restarts: a runtime's reminder scheduler wakes (activates) a passivated actor whose
    /// reminder is due. The decision must store at least one event, else the command fails with
    /// [`ActorError::InvalidEffect`] and nothing is written.
    ///
    /// After a *restart*, the new runtime learns of an actor's reminders when the actor is
    /// activated (by any message); an overdue reminder then fires at once.
    ///
    /// # Examples
    ///
    /// ```
    /// # use aether_actor::{Actor, ActorConfig, Actors, Decision};
    /// # use aether_core::{ActorId, InMemoryEventStore, Namespace};
    /// # use serde::{Deserialize, Serialize};
    /// # use std::time::Duration;
    /// struct Counter;
    ///
    /// #[derive(Debug, Clone, Serialize, Deserialize)]
    /// enum Cmd { Add(u64), Pull { from: String }, Got(u64), Later(u64) }
    ///
    /// #[derive(Debug, Serialize, Deserialize)]
    /// enum Ev { Added { n: u64 }, Pulled, Reminded }
    ///
    /// impl Actor for Counter {
    ///     const ACTOR_TYPE: &'static str = "counter";
    ///     type State = u64; type Command = Cmd; type Event = Ev; type Reply = u64;
    ///     type Rejection = String; type Query = (); type QueryReply = u64;
    ///
    ///     fn decide(&self, total: &u64, cmd: Cmd) -> Result<Decision<Self>, String> {
    ///         Ok(match cmd {
    ///             Cmd::Add(n) | Cmd::Got(n) => Decision::new(vec![Ev::Added { n }], total + n),
    ///             // Ask a peer for its total (adding 0); its answer comes back as `Got`.
    ///             Cmd::Pull { from } => Decision::new(vec![Ev::Pulled], *total).then_ask_peer(
    ///                 ActorId::new(from).map_err(|e| e.to_string())?,
    ///                 Cmd::Add(0),
    ///                 |result| result.ok().map(|outcome| Cmd::Got(outcome.reply)),
    ///             ),
    ///             // Persisted: `remind` is called when it is due, even after a passivation.
    ///             Cmd::Later(ms) => Decision::new(vec![Ev::Reminded], *total)
    ///                 .set_reminder("bonus", Duration::from_millis(ms)),
    ///         })
    ///     }
    ///     fn apply(&self, total: &mut u64, ev: &Ev) {
    ///         if let Ev::Added { n } = ev { *total += n }
    ///     }
    ///     fn query(&self, total: &u64, (): ()) -> u64 { *total }
    ///     fn remind(&self, _: &u64, name: &str) -> Option<Cmd> {
    ///         (name == "bonus").then_some(Cmd::Add(1))
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let counters = Actors::new(Namespace::new("demo")?, Counter, InMemoryEventStore::new(), ActorConfig::default())?;
    /// let (a, b) = (ActorId::new("a")?, ActorId::new("b")?);
    /// counters.ask(&a, Cmd::Later(20)).await?;
    /// counters.passivate(&a).await; // the reminder is persisted: the scheduler wakes a
    /// while counters.stats().commands < 2 {
    ///     tokio::time::sleep(Duration::from_millis(5)).await;
    /// }
    /// assert_eq!(counters.stats().reminders_fired, 1);
    /// assert_eq!(counters.query(&a, ()).await?, 1);
    /// assert_eq!(counters.stats().activations, 2);
    /// # let _ = b;
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_reminder(self, name: impl Into<String>, after: Duration) -> Self {
        self.effect(Effect::SetReminder {
            name: name.into(),
            after,
        })
    }

    /// Cancels the reminder `name`, persisted with this decision's events (which must not be
    /// empty, as for [`set_reminder`](Self::set_reminder)).
    pub fn cancel_reminder(self, name: impl Into<String>) -> Self {
        self.effect(Effect::CancelReminder { name: name.into() })
    }

    /// How many effects the decision declares.
    pub fn effect_count(&self) -> usize {
        self.effects.len()
    }
}
