//! [`Actors`]: the handle of one actor type in one namespace — `ask`, `tell`, `query`,
//! `passivate`, `shutdown` — over any [`SnapshotStore`].

mod answer_wait;
mod cell;
mod history;
mod mailbox;
mod publish;
mod queue;
mod registry;
mod reminders;
pub(crate) mod router;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use aether_core::{ActorId, Bus, Namespace, SnapshotStore, TraceContext};
use tokio::sync::oneshot;
use tokio::time::{Instant, timeout_at};

use crate::effect::CallChain;
use crate::metrics::Counters;
use crate::{
    Actor, ActorConfig, ActorError, ActorStats, AskError, AskOptions, CommandId, InvalidConfig,
    Outcome, QueryOptions, WhenFull,
};
use answer_wait::{NoAnswer, YieldHint, reply_by};
use mailbox::{CommandMsg, Envelope};
use registry::{Registry, Route};
use reminders::Reminders;
use router::Router;

/// The result of an ask.
pub type AskResult<A> = Result<Outcome<<A as Actor>::Reply>, AskError<<A as Actor>::Rejection>>;

pub(crate) struct Shared<A: Actor, S> {
    pub(crate) actor: A,
    pub(crate) store: S,
    pub(crate) namespace: Namespace,
    pub(crate) config: ActorConfig,
    pub(crate) registry: Registry<Box<Envelope<A>>, A::State>,
    pub(crate) counters: Counters,
    pub(crate) reminders: Arc<Reminders>,
    /// Where stored events are published (live path), if anywhere.
    pub(crate) bus: Option<Box<dyn publish::Publish>>,
    /// Boxes of finished command handlings, reused by the next ones (see `cell::Spare`).
    pub(crate) spare: cell::Spare<A, S>,
    /// Where effects to peers and due reminders go when this runtime is a cluster node's.
    router: OnceLock<Box<dyn Router<A>>>,
    /// Whether callers should yield once before waiting for a command's answer, and a
    /// query's (see `answer_wait`).
    command_answers: YieldHint,
    query_answers: YieldHint,
    shutting_down: AtomicBool,
    sweeper_started: AtomicBool,
    reminders_started: AtomicBool,
}

impl<A: Actor, S> Shared<A, S> {
    /// How an actor appears in a call chain: `<namespace>/<stream id>`.
    pub(crate) fn chain_key(&self, stream: &ActorId) -> Arc<str> {
        Arc::from(format!("{}/{stream}", self.namespace))
    }
}

/// The actors of one type `A` in one namespace, stored in `S`: the handle to send them
/// commands and queries.
///
/// Actors are virtual: every actor id exists, and the first message to an inactive actor
/// activates it (loads its snapshot and replays the tail of its events). Each active actor has
/// one task and one bounded mailbox: its messages are handled one at a time in arrival order;
/// different actors run concurrently. Idle actors are passivated after
/// [`ActorConfig::idle_timeout`], and the least recently used when more than
/// [`ActorConfig::max_active`] are active.
///
/// `S` is any [`SnapshotStore`] (the in-memory store, JetStream, …) holding *this namespace*:
/// the store decides where the events go; `namespace` labels metrics and spans. Events of an
/// actor are stored under the actor id `<A::ACTOR_TYPE>.<actor id>` (see
/// [`stream_id`](Self::stream_id)).
///
/// Cloning is cheap (a reference count). Creating the handle starts nothing; messages must be
/// sent from inside a tokio runtime, which runs the actors' tasks (and the runtime's idle
/// sweeper): use one handle within one tokio runtime. Dropping every handle does not stop active actors: they stop at their idle timeout; call
/// [`shutdown`](Self::shutdown) to stop them all.
///
/// # Examples
///
/// ```
/// # use aether_actor::{Actor, Decision};
/// # use serde::{Deserialize, Serialize};
/// # struct Counter;
/// # #[derive(Debug, Serialize, Deserialize)] enum Ev { Added { n: u64 } }
/// # impl Actor for Counter {
/// #     const ACTOR_TYPE: &'static str = "counter";
/// #     type State = u64; type Command = u64; type Event = Ev; type Reply = u64;
/// #     type Rejection = String; type Query = (); type QueryReply = u64;
/// #     fn decide(&self, total: &u64, n: u64) -> Result<Decision<Self>, String> {
/// #         Ok(Decision::new(vec![Ev::Added { n }], total + n))
/// #     }
/// #     fn apply(&self, total: &mut u64, Ev::Added { n }: &Ev) { *total += n }
/// #     fn query(&self, total: &u64, (): ()) -> u64 { *total }
/// # }
/// use aether_actor::{ActorConfig, Actors};
/// use aether_core::{ActorId, InMemoryEventStore, Namespace};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let counters = Actors::new(
///     Namespace::new("demo")?,
///     Counter,
///     InMemoryEventStore::new(),
///     ActorConfig::default(),
/// )?;
/// let id = ActorId::new("c-1")?;
/// let outcome = counters.ask(&id, 5).await?;
/// assert_eq!((outcome.reply, outcome.version), (5, 1));
/// assert_eq!(counters.query(&id, ()).await?, 5);
/// counters.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct Actors<A: Actor, S> {
    shared: Arc<Shared<A, S>>,
}

impl<A: Actor, S> Clone for Actors<A, S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<A: Actor, S> fmt::Debug for Actors<A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Actors")
            .field("namespace", &self.shared.namespace)
            .field("actor_type", &A::ACTOR_TYPE)
            .field("stats", &self.shared.counters.stats())
            .finish_non_exhaustive()
    }
}

impl<A: Actor, S: SnapshotStore + 'static> Actors<A, S> {
    /// A runtime for actors of type `A` in `namespace`, on `store`. Nothing starts until the
    /// first message.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] if a setting cannot work or `A::ACTOR_TYPE` is not one token of
    /// `[A-Za-z0-9_-]`.
    pub fn new(
        namespace: Namespace,
        actor: A,
        store: S,
        config: ActorConfig,
    ) -> Result<Self, InvalidConfig> {
        Self::build(namespace, actor, store, config, None)
    }

    /// A runtime as [`new`](Self::new) that also publishes every event its actors store on
    /// `bus`, in `namespace` (the live path of publication).
    ///
    /// An actor publishes a decision's events **after** the store accepted them — never
    /// before, never events the store refused or whose outcome is unknown — in version order,
    /// before it replies and before its next message: so a subscriber sees each actor's events
    /// once each, in order, in the normal case. It is **best effort (at most once)**: a bus
    /// that drops (a full subscriber queue) or does not take the events within
    /// [`ActorConfig::publish_timeout`] is counted ([`ActorStats::publish_drops`],
    /// [`ActorStats::publish_failures`]) and never fails the command; a crash between the
    /// append and the publish loses the publication. Subscribers that need every event read
    /// the store's [`EventFeed`](aether_core::EventFeed) from a checkpoint instead (at least
    /// once, in order per actor), and may use the bus as a low-latency hint. Events are
    /// published exactly as stored (ids, versions, command id), so the two paths can be
    /// de-duplicated by event id.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    ///
    /// # Examples
    ///
    /// ```
    /// # use aether_actor::{Actor, Decision};
    /// # use serde::{Deserialize, Serialize};
    /// # struct Counter;
    /// # #[derive(Debug, Serialize, Deserialize)] enum Ev { Added { n: u64 } }
    /// # impl Actor for Counter {
    /// #     const ACTOR_TYPE: &'static str = "counter";
    /// #     type State = u64; type Command = u64; type Event = Ev; type Reply = u64;
    /// #     type Rejection = String; type Query = (); type QueryReply = u64;
    /// #     fn decide(&self, total: &u64, n: u64) -> Result<Decision<Self>, String> {
    /// #         Ok(Decision::new(vec![Ev::Added { n }], total + n))
    /// #     }
    /// #     fn apply(&self, total: &mut u64, Ev::Added { n }: &Ev) { *total += n }
    /// #     fn query(&self, total: &u64, (): ()) -> u64 { *total }
    /// # }
    /// use aether_actor::{ActorConfig, Actors};
    /// use aether_core::{ActorId, EventBus, InMemoryEventStore, Namespace};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let demo = Namespace::new("demo")?;
    /// let bus = EventBus::new();
    /// let mut added = bus.subscribe(&demo);
    /// let counters = Actors::with_bus(demo, Counter, InMemoryEventStore::new(), bus, ActorConfig::default())?;
    /// counters.ask(&ActorId::new("c-1")?, 5).await?;
    /// let event = added.try_recv().expect("published before the reply");
    /// assert_eq!((event.actor_id.as_str(), event.version), ("counter.c-1", 1));
    /// assert_eq!(counters.stats().published, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_bus<B: Bus>(
        namespace: Namespace,
        actor: A,
        store: S,
        bus: B,
        config: ActorConfig,
    ) -> Result<Self, InvalidConfig> {
        Self::build(namespace, actor, store, config, Some(Box::new(bus)))
    }

    fn build(
        namespace: Namespace,
        actor: A,
        store: S,
        config: ActorConfig,
        bus: Option<Box<dyn publish::Publish>>,
    ) -> Result<Self, InvalidConfig> {
        config.validate()?;
        let ty = A::ACTOR_TYPE;
        if ty.is_empty()
            || ty.len() > 64
            || !ty
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(InvalidConfig {
                setting: "Actor::ACTOR_TYPE",
                problem: "must be 1 to 64 characters of [A-Za-z0-9_-]",
            });
        }
        let counters = Counters::new(&namespace, ty);
        Ok(Self {
            shared: Arc::new(Shared {
                actor,
                store,
                namespace,
                config,
                registry: Registry::new(),
                counters,
                reminders: Arc::default(),
                bus,
                spare: cell::Spare::default(),
                router: OnceLock::new(),
                command_answers: YieldHint::default(),
                query_answers: YieldHint::default(),
                shutting_down: AtomicBool::new(false),
                sweeper_started: AtomicBool::new(false),
                reminders_started: AtomicBool::new(false),
            }),
        })
    }

    /// The id under which `actor_id`'s events are stored: `<A::ACTOR_TYPE>.<actor_id>`.
    ///
    /// # Errors
    ///
    /// [`ActorError::InvalidActorId`] if the result is longer than `ActorId::MAX_LEN`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use aether_actor::{Actor, ActorConfig, Actors, Decision};
    /// # use aether_core::{ActorId, InMemoryEventStore, Namespace};
    /// # use serde::{Deserialize, Serialize};
    /// # struct Counter;
    /// # #[derive(Debug, Serialize, Deserialize)] enum Ev { Added { n: u64 } }
    /// # impl Actor for Counter {
    /// #     const ACTOR_TYPE: &'static str = "counter";
    /// #     type State = u64; type Command = u64; type Event = Ev; type Reply = u64;
    /// #     type Rejection = String; type Query = (); type QueryReply = u64;
    /// #     fn decide(&self, total: &u64, n: u64) -> Result<Decision<Self>, String> {
    /// #         if n == 0 { return Err("zero".into()) }
    /// #         Ok(Decision::new(vec![Ev::Added { n }], total + n))
    /// #     }
    /// #     fn apply(&self, total: &mut u64, Ev::Added { n }: &Ev) { *total += n }
    /// #     fn query(&self, total: &u64, (): ()) -> u64 { *total }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let counters = Actors::new(Namespace::new("demo")?, Counter, InMemoryEventStore::new(), ActorConfig::default())?;
    /// let id = ActorId::new("c-1")?;
    /// assert_eq!(counters.stream_id(&id)?.as_str(), "counter.c-1");
    /// # Ok(())
    /// # }
    /// ```
    pub fn stream_id(&self, actor_id: &ActorId) -> Result<ActorId, ActorError> {
        stream_id::<A>(actor_id)
    }

    /// Sends `command` to `actor_id` with a generated command id and the default options, and
    /// waits for the outcome.
    ///
    /// # Errors
    ///
    /// As [`ask_with`](Self::ask_with).
    pub async fn ask(&self, actor_id: &ActorId, command: A::Command) -> AskResult<A> {
        self.ask_with(actor_id, command, self.shared.config.ask.clone())
            .await
    }

    /// Sends `command` to `actor_id` and waits for the outcome: the versions its events were
    /// stored at and the reply.
    ///
    /// The command id (given in `options`, else a UUIDv7 generated here, before anything is
    /// sent) makes the command exactly-once: if the actor already applied a command with this
    /// id (within [`ActorConfig::command_horizon`] of its recent commands), it answers the
    /// stored outcome with [`Outcome::duplicate`] set and does not decide again — also after a
    /// passivation or a restart. To retry safely after a timeout or a lost answer, call again
    /// with the same id.
    ///
    /// # Errors
    ///
    /// - [`AskError::Rejected`]: the actor's rejection; nothing was written;
    /// - [`ActorError::InvalidActorId`], [`ActorError::CommandTooLarge`]: bad input, nothing
    ///   sent;
    /// - [`ActorError::Overloaded`]: the mailbox was full (with [`WhenFull::Wait`]: stayed
    ///   full until the timeout); nothing delivered;
    /// - [`ActorError::Timeout`]: no answer in time; the outcome is unknown;
    /// - [`ActorError::Conflict`]: another writer got there first; nothing written;
    /// - [`ActorError::Panicked`], [`ActorError::EventEncode`], [`ActorError::InvalidEvents`]:
    ///   this command failed, nothing was written, the actor keeps serving;
    /// - [`ActorError::Activation`], [`ActorError::Store`], [`ActorError::ShuttingDown`] and
    ///   the other [`ActorError`]s.
    ///
    /// # Examples
    ///
    /// ```
    /// # use aether_actor::{Actor, ActorConfig, Actors, Decision};
    /// # use aether_core::{ActorId, InMemoryEventStore, Namespace};
    /// # use serde::{Deserialize, Serialize};
    /// # struct Counter;
    /// # #[derive(Debug, Serialize, Deserialize)] enum Ev { Added { n: u64 } }
    /// # impl Actor for Counter {
    /// #     const ACTOR_TYPE: &'static str = "counter";
    /// #     type State = u64; type Command = u64; type Event = Ev; type Reply = u64;
    /// #     type Rejection = String; type Query = (); type QueryReply = u64;
    /// #     fn decide(&self, total: &u64, n: u64) -> Result<Decision<Self>, String> {
    /// #         if n == 0 { return Err("zero".into()) }
    /// #         Ok(Decision::new(vec![Ev::Added { n }], total + n))
    /// #     }
    /// #     fn apply(&self, total: &mut u64, Ev::Added { n }: &Ev) { *total += n }
    /// #     fn query(&self, total: &u64, (): ()) -> u64 { *total }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let counters = Actors::new(Namespace::new("demo")?, Counter, InMemoryEventStore::new(), ActorConfig::default())?;
    /// use aether_actor::{AskOptions, CommandId};
    /// use std::time::Duration;
    ///
    /// let id = ActorId::new("c-1")?;
    /// let command_id = CommandId::generate(); // kept across retries
    /// let options = AskOptions::default().command_id(command_id).timeout(Duration::from_secs(5));
    /// let first = counters.ask_with(&id, 3, options.clone()).await?;
    /// let retry = counters.ask_with(&id, 3, options).await?; // e.g. after a lost reply
    /// assert!(retry.duplicate);
    /// assert_eq!((retry.reply, retry.version), (first.reply, first.version));
    /// assert_eq!(counters.query(&id, ()).await?, 3); // applied once
    /// # Ok(())
    /// # }
    /// ```
    pub async fn ask_with(
        &self,
        actor_id: &ActorId,
        command: A::Command,
        options: AskOptions,
    ) -> AskResult<A> {
        self.ask_inner(actor_id, command, options, CallChain::default())
            .await
    }

    /// An ask made by an effect of another actor: a derived command id, the call chain. Goes
    /// through the router when there is one (a cluster node's runtime).
    pub(crate) async fn ask_effect(
        &self,
        actor_id: &ActorId,
        command: A::Command,
        command_id: CommandId,
        chain: CallChain,
    ) -> AskResult<A> {
        if let Some(router) = self.shared.router.get() {
            return router
                .ask(actor_id.clone(), command, command_id, chain)
                .await;
        }
        let options = self.shared.config.ask.clone().command_id(command_id);
        self.ask_inner(actor_id, command, options, chain).await
    }

    /// A tell made by an effect of another actor, with a derived command id; through the
    /// router when there is one.
    pub(crate) async fn tell_effect(
        &self,
        actor_id: &ActorId,
        command: A::Command,
        command_id: CommandId,
    ) -> Result<(), ActorError> {
        let result = match self.shared.router.get() {
            Some(router) => router.tell(actor_id.clone(), command, command_id).await,
            None => self
                .tell_inner(actor_id, command, command_id)
                .await
                .map(|_| ()),
        };
        if result.is_err() {
            self.shared.counters.tell_failures.inc();
        }
        result
    }

    /// Makes `router` carry this runtime's effects to peers and its due reminders (once; a
    /// second router is ignored).
    #[cfg(feature = "cluster")]
    pub(crate) fn set_router(&self, router: Box<dyn Router<A>>) {
        let _ = self.shared.router.set(router);
    }

    pub(crate) async fn ask_inner(
        &self,
        actor_id: &ActorId,
        command: A::Command,
        options: AskOptions,
        chain: CallChain,
    ) -> AskResult<A> {
        self.check_command(&command)?;
        self.ask_checked(actor_id, command, options, chain).await
    }

    /// [`ask_inner`](Self::ask_inner) of a command whose size its caller checked already (a
    /// cluster node: when it wrote the request, or on the request's JSON as received).
    pub(crate) async fn ask_checked(
        &self,
        actor_id: &ActorId,
        command: A::Command,
        options: AskOptions,
        chain: CallChain,
    ) -> AskResult<A> {
        let command_id = options.command_id.unwrap_or_else(CommandId::generate);
        let deadline = deadline_after(options.timeout);
        let timeout = || ActorError::Timeout {
            actor_id: actor_id.clone(),
            command_id: Some(command_id.clone()),
            after: options.timeout,
        };
        // Only asks made by effects carry a chain (an outside caller's is empty: no cost).
        if !chain.is_empty() && chain.contains(&self.shared.chain_key(&stream_id::<A>(actor_id)?)) {
            return Err(ActorError::Reentrant {
                actor_id: actor_id.clone(),
                chain: chain.to_strings(),
            }
            .into());
        }
        let (tx, rx) = oneshot::channel();
        let envelope = Envelope::Command(CommandMsg {
            command_id: command_id.clone(),
            command,
            on_conflict: options.on_conflict,
            reply: Some(tx),
            chain,
            trace: TraceContext::current(),
        });
        self.deliver(actor_id, envelope, options.when_full, deadline, &timeout)
            .await?;
        match reply_by(rx, deadline, &self.shared.command_answers).await {
            Err(NoAnswer::TimedOut) => Err(timeout().into()),
            Err(NoAnswer::Dropped) => Err(ActorError::Stopped {
                actor_id: actor_id.clone(),
            }
            .into()),
            Ok(result) => result,
        }
    }

    /// Sends `command` to `actor_id` without waiting for its outcome (fire and forget), with a
    /// generated command id; returns the id once the command is in the actor's mailbox.
    ///
    /// At most once: a command that cannot be delivered at once (full mailbox) is dropped,
    /// never retried. Every loss or failure — here or later in the actor (rejection,
    /// conflict, store error) — is counted in [`ActorStats::tell_failures`] and the metric
    /// `aether_actor_tell_failures_total`.
    ///
    /// # Errors
    ///
    /// Failures known before delivery (each also counted): [`ActorError::InvalidActorId`],
    /// [`ActorError::CommandTooLarge`], [`ActorError::Overloaded`],
    /// [`ActorError::ShuttingDown`], [`ActorError::Timeout`] (the actor was stopping for
    /// longer than the default timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// # use aether_actor::{Actor, ActorConfig, Actors, Decision};
    /// # use aether_core::{ActorId, InMemoryEventStore, Namespace};
    /// # use serde::{Deserialize, Serialize};
    /// # struct Counter;
    /// # #[derive(Debug, Serialize, Deserialize)] enum Ev { Added { n: u64 } }
    /// # impl Actor for Counter {
    /// #     const ACTOR_TYPE: &'static str = "counter";
    /// #     type State = u64; type Command = u64; type Event = Ev; type Reply = u64;
    /// #     type Rejection = String; type Query = (); type QueryReply = u64;
    /// #     fn decide(&self, total: &u64, n: u64) -> Result<Decision<Self>, String> {
    /// #         if n == 0 { return Err("zero".into()) }
    /// #         Ok(Decision::new(vec![Ev::Added { n }], total + n))
    /// #     }
    /// #     fn apply(&self, total: &mut u64, Ev::Added { n }: &Ev) { *total += n }
    /// #     fn query(&self, total: &u64, (): ()) -> u64 { *total }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let counters = Actors::new(Namespace::new("demo")?, Counter, InMemoryEventStore::new(), ActorConfig::default())?;
    /// let id = ActorId::new("c-1")?;
    /// counters.tell(&id, 2).await?;
    /// counters.tell(&id, 0).await?; // rejected later, in the actor: counted, not returned
    /// assert_eq!(counters.query(&id, ()).await?, 2); // queued behind both tells
    /// assert_eq!(counters.stats().tell_failures, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn tell(
        &self,
        actor_id: &ActorId,
        command: A::Command,
    ) -> Result<CommandId, ActorError> {
        let result = self
            .tell_inner(actor_id, command, CommandId::generate())
            .await;
        if result.is_err() {
            self.shared.counters.tell_failures.inc();
        }
        result
    }

    pub(crate) async fn tell_inner(
        &self,
        actor_id: &ActorId,
        command: A::Command,
        command_id: CommandId,
    ) -> Result<CommandId, ActorError> {
        self.check_command(&command)?;
        self.tell_checked(actor_id, command, command_id).await
    }

    /// [`tell_inner`](Self::tell_inner) of a command whose size its caller checked already.
    pub(crate) async fn tell_checked(
        &self,
        actor_id: &ActorId,
        command: A::Command,
        command_id: CommandId,
    ) -> Result<CommandId, ActorError> {
        let after = self.shared.config.ask.timeout;
        let deadline = deadline_after(after);
        let timeout = || ActorError::Timeout {
            actor_id: actor_id.clone(),
            command_id: Some(command_id.clone()),
            after,
        };
        let envelope = Envelope::Command(CommandMsg {
            command_id: command_id.clone(),
            command,
            on_conflict: self.shared.config.ask.on_conflict,
            reply: None,
            chain: CallChain::default(),
            trace: TraceContext::current(),
        });
        self.deliver(actor_id, envelope, WhenFull::Fail, deadline, &timeout)
            .await?;
        Ok(command_id)
    }

    /// Asks `actor_id` a read-only question, answered from its current state (after the
    /// messages before it in its mailbox). Activates the actor if needed; writes nothing.
    ///
    /// # Errors
    ///
    /// [`ActorError::InvalidActorId`], [`ActorError::Overloaded`], [`ActorError::Timeout`],
    /// [`ActorError::Activation`], [`ActorError::Panicked`] (the query panicked; the actor
    /// keeps serving), [`ActorError::ShuttingDown`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use aether_actor::{Actor, ActorConfig, Actors, Decision};
    /// # use aether_core::{ActorId, InMemoryEventStore, Namespace};
    /// # use serde::{Deserialize, Serialize};
    /// # struct Counter;
    /// # #[derive(Debug, Serialize, Deserialize)] enum Ev { Added { n: u64 } }
    /// # impl Actor for Counter {
    /// #     const ACTOR_TYPE: &'static str = "counter";
    /// #     type State = u64; type Command = u64; type Event = Ev; type Reply = u64;
    /// #     type Rejection = String; type Query = (); type QueryReply = u64;
    /// #     fn decide(&self, total: &u64, n: u64) -> Result<Decision<Self>, String> {
    /// #         if n == 0 { return Err("zero".into()) }
    /// #         Ok(Decision::new(vec![Ev::Added { n }], total + n))
    /// #     }
    /// #     fn apply(&self, total: &mut u64, Ev::Added { n }: &Ev) { *total += n }
    /// #     fn query(&self, total: &u64, (): ()) -> u64 { *total }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let counters = Actors::new(Namespace::new("demo")?, Counter, InMemoryEventStore::new(), ActorConfig::default())?;
    /// let id = ActorId::new("c-1")?;
    /// assert_eq!(counters.query(&id, ()).await?, 0); // every id exists: a fresh actor
    /// counters.ask(&id, 4).await?;
    /// assert_eq!(counters.query(&id, ()).await?, 4);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn query(
        &self,
        actor_id: &ActorId,
        query: A::Query,
    ) -> Result<A::QueryReply, ActorError> {
        let ask = &self.shared.config.ask;
        let options = QueryOptions {
            timeout: ask.timeout,
            when_full: ask.when_full,
        };
        self.query_with(actor_id, query, options).await
    }

    /// [`query`](Self::query) with this call's own timeout and full-mailbox behaviour.
    ///
    /// # Errors
    ///
    /// As [`query`](Self::query).
    ///
    /// # Examples
    ///
    /// ```
    /// # use aether_actor::{Actor, ActorConfig, Actors, Decision};
    /// # use aether_core::{ActorId, InMemoryEventStore, Namespace};
    /// # use serde::{Deserialize, Serialize};
    /// # struct Counter;
    /// # #[derive(Debug, Serialize, Deserialize)] enum Ev { Added { n: u64 } }
    /// # impl Actor for Counter {
    /// #     const ACTOR_TYPE: &'static str = "counter";
    /// #     type State = u64; type Command = u64; type Event = Ev; type Reply = u64;
    /// #     type Rejection = String; type Query = (); type QueryReply = u64;
    /// #     fn decide(&self, total: &u64, n: u64) -> Result<Decision<Self>, String> {
    /// #         Ok(Decision::new(vec![Ev::Added { n }], total + n))
    /// #     }
    /// #     fn apply(&self, total: &mut u64, Ev::Added { n }: &Ev) { *total += n }
    /// #     fn query(&self, total: &u64, (): ()) -> u64 { *total }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let counters = Actors::new(Namespace::new("demo")?, Counter, InMemoryEventStore::new(), ActorConfig::default())?;
    /// use aether_actor::{QueryOptions, WhenFull};
    /// use std::time::Duration;
    ///
    /// let options = QueryOptions::default()
    ///     .timeout(Duration::from_millis(200))
    ///     .when_full(WhenFull::Wait);
    /// let total = counters.query_with(&ActorId::new("c-1")?, (), options).await?;
    /// assert_eq!(total, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn query_with(
        &self,
        actor_id: &ActorId,
        query: A::Query,
        options: QueryOptions,
    ) -> Result<A::QueryReply, ActorError> {
        let mut query = Some(query);
        if let Some(answer) = self.query_idle(actor_id, &mut query) {
            return answer;
        }
        let Some(query) = query else {
            unreachable!("the query is taken only when it is answered")
        };
        let deadline = deadline_after(options.timeout);
        let timeout = || ActorError::Timeout {
            actor_id: actor_id.clone(),
            command_id: None,
            after: options.timeout,
        };
        let (tx, rx) = oneshot::channel();
        let envelope = Envelope::Query { query, reply: tx };
        self.deliver(actor_id, envelope, options.when_full, deadline, &timeout)
            .await?;
        match reply_by(rx, deadline, &self.shared.query_answers).await {
            Err(NoAnswer::TimedOut) => Err(timeout()),
            Err(NoAnswer::Dropped) => Err(ActorError::Stopped {
                actor_id: actor_id.clone(),
            }),
            Ok(result) => result,
        }
    }

    /// Answers `query` at once if `actor_id` is active and idle (it waits for a message,
    /// none is queued, its state is current): from the state it lent its mailbox, on the
    /// caller's task, the answer it would give to the query sent now — every message sent
    /// before is handled, none is being handled. `None` (the query left in place) otherwise:
    /// it goes through the mailbox.
    fn query_idle(
        &self,
        actor_id: &ActorId,
        query: &mut Option<A::Query>,
    ) -> Option<Result<A::QueryReply, ActorError>> {
        if self.shared.shutting_down.load(Ordering::Acquire) {
            return None;
        }
        let (mailbox, control) = self.shared.registry.open(actor_id)?;
        let started = std::time::Instant::now();
        let actor = &self.shared.actor;
        let answer = mailbox.read_lent(|state| {
            let query = query.take()?;
            // Under the mailbox's lock: the panic is caught here, as the actor's task would.
            Some(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                || actor.query(state, query),
            )))
        })??;
        control.activity.fetch_add(1, Ordering::Relaxed);
        let counters = &self.shared.counters;
        counters.queries.inc();
        counters
            .query_seconds
            .record(started.elapsed().as_secs_f64());
        Some(answer.map_err(|panic| ActorError::Panicked {
            actor_id: actor_id.clone(),
            message: cell::panic_message(&panic),
        }))
    }

    /// Passivates `actor_id` now if it is active: it handles the messages already in its
    /// mailbox, then stops; the next message activates it again from the store. Returns when
    /// it has stopped; `false` if it was not active.
    ///
    /// # Examples
    ///
    /// ```
    /// # use aether_actor::{Actor, ActorConfig, Actors, Decision};
    /// # use aether_core::{ActorId, InMemoryEventStore, Namespace};
    /// # use serde::{Deserialize, Serialize};
    /// # struct Counter;
    /// # #[derive(Debug, Serialize, Deserialize)] enum Ev { Added { n: u64 } }
    /// # impl Actor for Counter {
    /// #     const ACTOR_TYPE: &'static str = "counter";
    /// #     type State = u64; type Command = u64; type Event = Ev; type Reply = u64;
    /// #     type Rejection = String; type Query = (); type QueryReply = u64;
    /// #     fn decide(&self, total: &u64, n: u64) -> Result<Decision<Self>, String> {
    /// #         if n == 0 { return Err("zero".into()) }
    /// #         Ok(Decision::new(vec![Ev::Added { n }], total + n))
    /// #     }
    /// #     fn apply(&self, total: &mut u64, Ev::Added { n }: &Ev) { *total += n }
    /// #     fn query(&self, total: &u64, (): ()) -> u64 { *total }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let counters = Actors::new(Namespace::new("demo")?, Counter, InMemoryEventStore::new(), ActorConfig::default())?;
    /// let id = ActorId::new("c-1")?;
    /// counters.ask(&id, 4).await?;
    /// assert!(counters.passivate(&id).await);
    /// assert!(!counters.passivate(&id).await); // no longer active
    /// assert_eq!(counters.query(&id, ()).await?, 4); // reactivated by replay
    /// assert_eq!(counters.stats().activations, 2);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn passivate(&self, actor_id: &ActorId) -> bool {
        match self.shared.registry.passivate(actor_id) {
            Some(control) => {
                control.stopped().await;
                true
            }
            None => false,
        }
    }

    /// Passivates every active actor whose id matches `which` (each handles what is already
    /// in its mailbox, and saves a due snapshot, first); returns how many, once all have
    /// stopped. A cluster node uses it to release a shard.
    ///
    /// # Examples
    ///
    /// ```
    /// # use aether_actor::{Actor, ActorConfig, Actors, Decision};
    /// # use aether_core::{ActorId, InMemoryEventStore, Namespace};
    /// # use serde::{Deserialize, Serialize};
    /// # struct Counter;
    /// # #[derive(Debug, Serialize, Deserialize)] enum Ev { Added { n: u64 } }
    /// # impl Actor for Counter {
    /// #     const ACTOR_TYPE: &'static str = "counter";
    /// #     type State = u64; type Command = u64; type Event = Ev; type Reply = u64;
    /// #     type Rejection = String; type Query = (); type QueryReply = u64;
    /// #     fn decide(&self, total: &u64, n: u64) -> Result<Decision<Self>, String> {
    /// #         Ok(Decision::new(vec![Ev::Added { n }], total + n))
    /// #     }
    /// #     fn apply(&self, total: &mut u64, Ev::Added { n }: &Ev) { *total += n }
    /// #     fn query(&self, total: &u64, (): ()) -> u64 { *total }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let counters = Actors::new(Namespace::new("demo")?, Counter, InMemoryEventStore::new(), ActorConfig::default())?;
    /// for id in ["a-1", "a-2", "b-1"] {
    ///     counters.ask(&ActorId::new(id)?, 1).await?;
    /// }
    /// let stopped = counters.passivate_where(|id| id.as_str().starts_with("a-")).await;
    /// assert_eq!((stopped, counters.stats().active), (2, 1));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn passivate_where(&self, which: impl Fn(&ActorId) -> bool) -> usize {
        self.stop_where(which, false).await
    }

    /// [`passivate_where`](Self::passivate_where), each actor saving a snapshot as it stops
    /// (when it has events since its last one), whatever the snapshot policy: for a handoff,
    /// so that the next activation replays only what follows the snapshot.
    #[cfg(feature = "cluster")]
    pub(crate) async fn hand_off_where(&self, which: impl Fn(&ActorId) -> bool) -> usize {
        self.stop_where(which, true).await
    }

    async fn stop_where(&self, which: impl Fn(&ActorId) -> bool, snapshot: bool) -> usize {
        let controls = self.shared.registry.passivate_where(which, snapshot);
        for control in &controls {
            control.stopped().await;
        }
        controls.len()
    }

    /// Stops the runtime: new messages fail with [`ActorError::ShuttingDown`], every active
    /// actor handles what is already in its mailbox (and saves a due snapshot), then stops.
    /// Returns when all have stopped.
    ///
    /// # Examples
    ///
    /// ```
    /// # use aether_actor::{Actor, ActorConfig, Actors, Decision};
    /// # use aether_core::{ActorId, InMemoryEventStore, Namespace};
    /// # use serde::{Deserialize, Serialize};
    /// # struct Counter;
    /// # #[derive(Debug, Serialize, Deserialize)] enum Ev { Added { n: u64 } }
    /// # impl Actor for Counter {
    /// #     const ACTOR_TYPE: &'static str = "counter";
    /// #     type State = u64; type Command = u64; type Event = Ev; type Reply = u64;
    /// #     type Rejection = String; type Query = (); type QueryReply = u64;
    /// #     fn decide(&self, total: &u64, n: u64) -> Result<Decision<Self>, String> {
    /// #         if n == 0 { return Err("zero".into()) }
    /// #         Ok(Decision::new(vec![Ev::Added { n }], total + n))
    /// #     }
    /// #     fn apply(&self, total: &mut u64, Ev::Added { n }: &Ev) { *total += n }
    /// #     fn query(&self, total: &u64, (): ()) -> u64 { *total }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let counters = Actors::new(Namespace::new("demo")?, Counter, InMemoryEventStore::new(), ActorConfig::default())?;
    /// use aether_actor::ActorError;
    ///
    /// let id = ActorId::new("c-1")?;
    /// counters.tell(&id, 1).await?;
    /// counters.shutdown().await; // the queued tell is handled first
    /// assert_eq!(counters.stats().active, 0);
    /// assert!(matches!(counters.query(&id, ()).await, Err(ActorError::ShuttingDown)));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::Release);
        for control in self.shared.registry.close() {
            control.stopped().await;
        }
    }

    /// How many messages wait in `actor_id`'s mailbox (not counting the one being handled),
    /// or `None` if the actor is not active.
    ///
    /// # Examples
    ///
    /// ```
    /// # use aether_actor::{Actor, ActorConfig, Actors, Decision};
    /// # use aether_core::{ActorId, InMemoryEventStore, Namespace};
    /// # use serde::{Deserialize, Serialize};
    /// # struct Counter;
    /// # #[derive(Debug, Serialize, Deserialize)] enum Ev { Added { n: u64 } }
    /// # impl Actor for Counter {
    /// #     const ACTOR_TYPE: &'static str = "counter";
    /// #     type State = u64; type Command = u64; type Event = Ev; type Reply = u64;
    /// #     type Rejection = String; type Query = (); type QueryReply = u64;
    /// #     fn decide(&self, total: &u64, n: u64) -> Result<Decision<Self>, String> {
    /// #         if n == 0 { return Err("zero".into()) }
    /// #         Ok(Decision::new(vec![Ev::Added { n }], total + n))
    /// #     }
    /// #     fn apply(&self, total: &mut u64, Ev::Added { n }: &Ev) { *total += n }
    /// #     fn query(&self, total: &u64, (): ()) -> u64 { *total }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let counters = Actors::new(Namespace::new("demo")?, Counter, InMemoryEventStore::new(), ActorConfig::default())?;
    /// let id = ActorId::new("c-1")?;
    /// assert_eq!(counters.mailbox_depth(&id), None); // not active
    /// counters.ask(&id, 1).await?;
    /// assert_eq!(counters.mailbox_depth(&id), Some(0));
    /// # Ok(())
    /// # }
    /// ```
    pub fn mailbox_depth(&self, actor_id: &ActorId) -> Option<usize> {
        self.shared.registry.mailbox_depth(actor_id)
    }

    /// Counts since the runtime started (also exported as `metrics`, see [`crate::metrics`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # use aether_actor::{Actor, ActorConfig, Actors, Decision};
    /// # use aether_core::{ActorId, InMemoryEventStore, Namespace};
    /// # use serde::{Deserialize, Serialize};
    /// # struct Counter;
    /// # #[derive(Debug, Serialize, Deserialize)] enum Ev { Added { n: u64 } }
    /// # impl Actor for Counter {
    /// #     const ACTOR_TYPE: &'static str = "counter";
    /// #     type State = u64; type Command = u64; type Event = Ev; type Reply = u64;
    /// #     type Rejection = String; type Query = (); type QueryReply = u64;
    /// #     fn decide(&self, total: &u64, n: u64) -> Result<Decision<Self>, String> {
    /// #         if n == 0 { return Err("zero".into()) }
    /// #         Ok(Decision::new(vec![Ev::Added { n }], total + n))
    /// #     }
    /// #     fn apply(&self, total: &mut u64, Ev::Added { n }: &Ev) { *total += n }
    /// #     fn query(&self, total: &u64, (): ()) -> u64 { *total }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let counters = Actors::new(Namespace::new("demo")?, Counter, InMemoryEventStore::new(), ActorConfig::default())?;
    /// let id = ActorId::new("c-1")?;
    /// counters.ask(&id, 1).await?;
    /// let _ = counters.ask(&id, 0).await; // rejected
    /// let stats = counters.stats();
    /// assert_eq!((stats.commands, stats.rejections, stats.activations), (2, 1, 1));
    /// # Ok(())
    /// # }
    /// ```
    pub fn stats(&self) -> ActorStats {
        self.shared.counters.stats()
    }

    /// The configuration the runtime was created with.
    pub fn config(&self) -> &ActorConfig {
        &self.shared.config
    }

    /// The namespace this runtime was created for.
    pub fn namespace(&self) -> &Namespace {
        &self.shared.namespace
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.shared.store
    }

    /// Refuses a command whose JSON is larger than `max_command_bytes`, or does not encode.
    pub(crate) fn check_command(&self, command: &A::Command) -> Result<(), ActorError> {
        self.write_command(command, None)
    }

    /// [`check_command`](Self::check_command), writing the command's JSON to `sink` as it
    /// goes (never more than the limit): a node that sends the command checks it and writes
    /// its request in one pass.
    pub(crate) fn write_command(
        &self,
        command: &A::Command,
        sink: Option<&mut Vec<u8>>,
    ) -> Result<(), ActorError> {
        let limit = self.shared.config.max_command_bytes;
        let mut counter = SizeLimit {
            size: 0,
            limit,
            sink,
        };
        match serde_json::to_writer(&mut counter, command) {
            Ok(()) => Ok(()),
            Err(_) if counter.size > limit => Err(ActorError::CommandTooLarge {
                size: counter.size,
                limit,
            }),
            Err(e) => Err(ActorError::CommandEncode(e.to_string())),
        }
    }

    /// Refuses a command received as `json` (a cluster node's request body) if it is larger
    /// than `max_command_bytes`: the command's JSON as received, not as this node would write
    /// it (the same for a node's own requests).
    #[cfg(feature = "cluster")]
    pub(crate) fn check_command_json(&self, json: &str) -> Result<(), ActorError> {
        let limit = self.shared.config.max_command_bytes;
        if json.len() > limit {
            return Err(ActorError::CommandTooLarge {
                size: json.len(),
                limit,
            });
        }
        Ok(())
    }

    /// Starts, once, the task that passivates idle actors: every half idle timeout (at least
    /// 1 ms, at most 60 s) it looks at each actor's count of handled messages, and asks the
    /// actors whose count stayed the same for an idle timeout's worth of sweeps to stop. So an
    /// idle actor stops between 1 and 1.5 idle timeouts after its last message (for idle
    /// timeouts above 2 minutes, at most 2 minutes late), and no clock is read per message.
    /// One task per runtime rather than a timer per actor; it ends with the runtime (it holds
    /// only a weak reference).
    fn start_sweeper(&self) {
        let Some(idle) = self.shared.config.idle_timeout else {
            return;
        };
        if self.shared.sweeper_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let period = (idle / 2).clamp(
            std::time::Duration::from_millis(1),
            std::time::Duration::from_secs(60),
        );
        // Sweeps in a row that must find an actor without a handled message: its last one
        // came before the first of them, so it has been idle at least `quiet × period`.
        let quiet = u32::try_from(idle.as_nanos().div_ceil(period.as_nanos().max(1)))
            .unwrap_or(u32::MAX)
            .max(1);
        let shared = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                if shared.shutting_down.load(Ordering::Acquire) {
                    return;
                }
                shared.registry.sweep_idle(quiet);
            }
        });
    }

    /// Starts, once, the runtime's reminder scheduler: one task that sleeps until the earliest
    /// known reminder is due, then delivers it to its actor — activating the actor if it was
    /// passivated. It holds only a weak reference to the runtime and ends with it (checked at
    /// least every 60 s) or at shutdown.
    pub(crate) fn start_reminders(&self) {
        if self.shared.reminders_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(&self.shared);
        let reminders = self.shared.reminders.clone();
        tokio::spawn(async move {
            loop {
                let changed = reminders.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                if shared.shutting_down.load(Ordering::Acquire) {
                    return;
                }
                let now = reminders::now_unix_ms();
                let (due, next) = reminders.take_due(now);
                let actors = Self { shared };
                for (actor_id, name, _) in due {
                    let actors = actors.clone();
                    tokio::spawn(async move { actors.deliver_reminder(actor_id, name).await });
                }
                drop(actors);
                let wait = next.map_or(60_000, |at| at.saturating_sub(now).min(60_000));
                let _ = tokio::time::timeout(std::time::Duration::from_millis(wait), changed).await;
            }
        });
    }

    async fn deliver_reminder(&self, actor_id: ActorId, name: String) {
        let result = match self.shared.router.get() {
            // The actor's shard may be served elsewhere by now: the router wakes it there.
            Some(router) => router.remind(actor_id.clone(), name.clone()).await,
            None => self.remind_here(&actor_id, &name).await,
        };
        match result {
            Ok(()) | Err(ActorError::ShuttingDown) => {}
            Err(error) => {
                // Not lost: persisted with the actor; tried again in a second.
                self.shared.counters.effect_failures.inc();
                tracing::warn!(%actor_id, reminder = %name, %error, "a due reminder could not be delivered; retrying");
                let again = reminders::now_unix_ms().saturating_add(1000);
                self.shared.reminders.retry(actor_id, name, again);
            }
        }
    }

    /// Wakes `actor_id` in this runtime for its reminder `name` (activating it if needed): it
    /// fires the reminder if its table still holds it due, else only registers its table.
    pub(crate) async fn remind_here(
        &self,
        actor_id: &ActorId,
        name: &str,
    ) -> Result<(), ActorError> {
        let after = self.shared.config.ask.timeout;
        let deadline = deadline_after(after);
        let timeout = || ActorError::Timeout {
            actor_id: actor_id.clone(),
            command_id: None,
            after,
        };
        let envelope = Envelope::Reminder {
            name: name.to_owned(),
        };
        self.deliver(actor_id, envelope, WhenFull::Wait, deadline, &timeout)
            .await
    }

    /// Puts `envelope` into `actor_id`'s mailbox, activating the actor if needed.
    async fn deliver(
        &self,
        actor_id: &ActorId,
        envelope: Envelope<A>,
        when_full: WhenFull,
        deadline: Instant,
        timeout: &(dyn Fn() -> ActorError + Sync),
    ) -> Result<(), ActorError> {
        // Only a new activation needs the stream id itself; every call checks that it exists.
        check_stream_id::<A>(actor_id)?;
        let config = &self.shared.config;
        // Boxed: a mailbox's memory is slots of the message type (tokio allocates them in
        // blocks of 32), and an idle actor should cost little.
        let mut envelope = Box::new(envelope);
        loop {
            if self.shared.shutting_down.load(Ordering::Acquire) {
                return Err(ActorError::ShuttingDown);
            }
            let tx = match self.shared.registry.route(
                actor_id,
                config.mailbox_capacity,
                config.max_active,
            ) {
                Route::Closed => return Err(ActorError::ShuttingDown),
                Route::Open(tx) => tx,
                Route::Created(tx, new) => {
                    self.start_sweeper();
                    self.shared.counters.actor_started();
                    // Cannot fail: `check_stream_id` accepted it.
                    let stream = stream_id::<A>(actor_id)?;
                    tokio::spawn(cell::run(
                        self.shared.clone(),
                        actor_id.clone(),
                        stream,
                        new,
                    ));
                    tx
                }
                // Boxed, as the wait for room below: a rare wait should not size the future
                // of every message (a serving node allocates one per request).
                Route::Stopping(control) => {
                    match Box::pin(timeout_at(deadline, control.stopped())).await {
                        Err(_) => return Err(timeout()),
                        Ok(_) => continue,
                    }
                }
            };
            match when_full {
                WhenFull::Fail => match tx.try_send(envelope) {
                    Ok(()) => return Ok(()),
                    Err(queue::TrySendError::Full(_)) => {
                        self.shared.counters.overloaded.inc();
                        return Err(ActorError::Overloaded {
                            actor_id: actor_id.clone(),
                            capacity: config.mailbox_capacity,
                        });
                    }
                    Err(queue::TrySendError::Closed(back)) => {
                        envelope = back;
                    }
                },
                WhenFull::Wait => match tx.try_send(envelope) {
                    Ok(()) => return Ok(()),
                    Err(queue::TrySendError::Closed(back)) => envelope = back,
                    Err(queue::TrySendError::Full(back)) => {
                        match Box::pin(timeout_at(deadline, tx.send_wait(back))).await {
                            Err(_) => {
                                self.shared.counters.overloaded.inc();
                                return Err(ActorError::Overloaded {
                                    actor_id: actor_id.clone(),
                                    capacity: config.mailbox_capacity,
                                });
                            }
                            Ok(Ok(())) => return Ok(()),
                            Ok(Err(back)) => envelope = back,
                        }
                    }
                },
            }
            // The mailbox closed under us: the actor is stopping. Route again (and wait).
            tokio::task::yield_now().await;
        }
    }
}

/// `now + timeout`, or 30 years from now if that overflows (as tokio does) (a huge timeout means "no
/// timeout", never a panic).
pub(crate) fn deadline_after(timeout: std::time::Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + std::time::Duration::from_secs(30 * 365 * 24 * 3600))
}

pub(crate) fn stream_id<A: Actor>(actor_id: &ActorId) -> Result<ActorId, ActorError> {
    ActorId::new(format!("{}.{actor_id}", A::ACTOR_TYPE)).map_err(|e| ActorError::InvalidActorId {
        id: actor_id.as_str().chars().take(64).collect(),
        reason: format!("as {}.<id>: {e}", A::ACTOR_TYPE),
    })
}

/// Counts bytes written, failing once past the limit (so a huge command is not serialized
/// whole just to be refused).
/// Fails exactly when [`stream_id`] fails, without building the id: `A::ACTOR_TYPE` is one
/// token of `[A-Za-z0-9_-]` (checked by [`Actors::new`]) and `actor_id` a valid id, so
/// `<type>.<id>` breaks no rule but, perhaps, the length.
pub(crate) fn check_stream_id<A: Actor>(actor_id: &ActorId) -> Result<(), ActorError> {
    if A::ACTOR_TYPE.len() + 1 + actor_id.as_str().len() <= ActorId::MAX_LEN {
        Ok(())
    } else {
        stream_id::<A>(actor_id).map(|_| ())
    }
}

/// Counts what is written, refuses it past `limit`, and copies it to `sink` if any.
struct SizeLimit<'a> {
    size: usize,
    limit: usize,
    sink: Option<&'a mut Vec<u8>>,
}

impl std::io::Write for SizeLimit<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.size += buf.len();
        if self.size > self.limit {
            return Err(std::io::Error::other("over the limit"));
        }
        if let Some(sink) = &mut self.sink {
            sink.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use aether_core::InMemoryEventStore;

    use super::*;
    use crate::Decision;

    macro_rules! unit_actor {
        ($name:ident, $ty:literal) => {
            struct $name;
            impl Actor for $name {
                const ACTOR_TYPE: &'static str = $ty;
                type State = ();
                type Command = ();
                type Event = ();
                type Reply = ();
                type Rejection = ();
                type Query = ();
                type QueryReply = ();
                fn decide(&self, (): &(), (): ()) -> Result<Decision<Self>, ()> {
                    Ok(Decision::reply(()))
                }
                fn apply(&self, (): &mut (), (): &()) {}
                fn query(&self, (): &(), (): ()) {}
            }
        };
    }

    /// Commands are strings.
    struct Texts;
    impl Actor for Texts {
        const ACTOR_TYPE: &'static str = "texts";
        type State = ();
        type Command = String;
        type Event = ();
        type Reply = ();
        type Rejection = ();
        type Query = ();
        type QueryReply = ();
        fn decide(&self, (): &(), _: String) -> Result<Decision<Self>, ()> {
            Ok(Decision::reply(()))
        }
        fn apply(&self, (): &mut (), (): &()) {}
        fn query(&self, (): &(), (): ()) {}
    }

    #[tokio::test]
    async fn a_command_is_written_as_it_is_checked_and_never_past_the_limit() {
        let config = ActorConfig {
            max_command_bytes: 10,
            ..ActorConfig::default()
        };
        let actors = Actors::new(ns(), Texts, InMemoryEventStore::new(), config).unwrap();
        let mut out = b"prefix:".to_vec();
        actors
            .write_command(&"a\"b".to_owned(), Some(&mut out))
            .unwrap();
        assert_eq!(out, br#"prefix:"a\"b""#);
        for long in ["x".repeat(9), "x".repeat(40)] {
            let mut out = Vec::new();
            let written = actors.write_command(&long, Some(&mut out)).unwrap_err();
            let checked = actors.check_command(&long).unwrap_err();
            assert!(
                matches!(written, ActorError::CommandTooLarge { limit: 10, .. }),
                "{written:?}"
            );
            assert_eq!(written.to_string(), checked.to_string());
            assert!(out.len() <= 10, "{} bytes kept", out.len());
        }
        assert!(actors.check_command(&"x".repeat(8)).is_ok());
    }

    unit_actor!(Dotted, "a.b");
    unit_actor!(Empty, "");
    unit_actor!(Fine, "fine_type-2");

    fn ns() -> Namespace {
        Namespace::new("t").unwrap()
    }

    #[test]
    fn actor_types_must_be_one_plain_token() {
        let store = InMemoryEventStore::new;
        let config = ActorConfig::default;
        let err = Actors::new(ns(), Dotted, store(), config()).unwrap_err();
        assert_eq!(err.setting, "Actor::ACTOR_TYPE");
        assert!(Actors::new(ns(), Empty, store(), config()).is_err());
        assert!(Actors::new(ns(), Fine, store(), config()).is_ok());
    }

    #[test]
    fn bad_configs_are_refused_at_creation() {
        let config = ActorConfig {
            mailbox_capacity: 0,
            ..ActorConfig::default()
        };
        let err = Actors::new(ns(), Fine, InMemoryEventStore::new(), config).unwrap_err();
        assert_eq!(err.setting, "mailbox_capacity");
    }

    #[test]
    fn stream_ids_are_prefixed_and_checked() {
        let actors = Actors::new(
            ns(),
            Fine,
            InMemoryEventStore::new(),
            ActorConfig::default(),
        )
        .unwrap();
        let id = ActorId::new("x.y").unwrap();
        assert_eq!(actors.stream_id(&id).unwrap().as_str(), "fine_type-2.x.y");
        let long = ActorId::new("z".repeat(ActorId::MAX_LEN)).unwrap();
        assert!(matches!(
            actors.stream_id(&long),
            Err(ActorError::InvalidActorId { .. })
        ));
        // The cheap check agrees with building the id, around the length limit.
        let prefix = "fine_type-2.".len();
        for len in [
            1,
            ActorId::MAX_LEN - prefix - 1,
            ActorId::MAX_LEN - prefix,
            ActorId::MAX_LEN - prefix + 1,
            ActorId::MAX_LEN,
        ] {
            let id =
                ActorId::new("a.b".repeat(len).get(..len).unwrap().trim_end_matches('.')).unwrap();
            assert_eq!(
                check_stream_id::<Fine>(&id).is_ok(),
                actors.stream_id(&id).is_ok(),
                "length {}",
                id.as_str().len()
            );
        }
    }
}
