//! [`Actor`]: what the user writes — state, a decision from a command to events (or a typed
//! rejection), `apply`, and read-only queries — and [`Decision`], what a decision returns.

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{self, CodecError, RawEvent};

/// An event-sourced actor type: the behaviour shared by every actor of that type.
///
/// The state lives apart from the behaviour (as in ractor): the runtime keeps one
/// [`State`](Self::State) per active actor and passes it to the methods, which take `&self`
/// so that one value of the implementing type (holding configuration or services) serves every
/// actor of the type. Each method is synchronous and should be pure: a command is decided on
/// the current state ([`decide`](Self::decide), as cqrs-es's `Aggregate::handle`), the events
/// are stored, then applied ([`apply`](Self::apply)). Replay applies the same events, so
/// `apply` must be deterministic and must not fail.
///
/// A panic in `decide` or `query` fails that one message with a typed error; the actor keeps
/// serving. A panic in `apply` (after the events were stored) makes the runtime drop the
/// in-memory state and reload it from the store before the next message.
///
/// # Examples
///
/// ```
/// use aether_actor::{Actor, Decision};
/// use serde::{Deserialize, Serialize};
///
/// struct Account;
///
/// #[derive(Debug, Default, Clone, Serialize, Deserialize)]
/// struct Balance { cents: u64 }
///
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// enum Command { Deposit { cents: u64 }, Withdraw { cents: u64 } }
///
/// #[derive(Debug, Serialize, Deserialize)]
/// enum Event { Deposited { cents: u64 }, Withdrawn { cents: u64 } }
///
/// #[derive(Debug, PartialEq)]
/// enum Rejection { Overdraft { balance: u64 } }
///
/// impl Actor for Account {
///     const ACTOR_TYPE: &'static str = "account";
///     type State = Balance;
///     type Command = Command;
///     type Event = Event;
///     type Reply = u64; // the balance after the command
///     type Rejection = Rejection;
///     type Query = ();
///     type QueryReply = u64;
///
///     fn decide(&self, state: &Balance, command: Command) -> Result<Decision<Self>, Rejection> {
///         match command {
///             Command::Deposit { cents } => {
///                 Ok(Decision::new(vec![Event::Deposited { cents }], state.cents + cents))
///             }
///             Command::Withdraw { cents } if cents > state.cents => {
///                 Err(Rejection::Overdraft { balance: state.cents })
///             }
///             Command::Withdraw { cents } => {
///                 Ok(Decision::new(vec![Event::Withdrawn { cents }], state.cents - cents))
///             }
///         }
///     }
///
///     fn apply(&self, state: &mut Balance, event: &Event) {
///         match event {
///             Event::Deposited { cents } => state.cents += cents,
///             Event::Withdrawn { cents } => state.cents -= cents,
///         }
///     }
///
///     fn query(&self, state: &Balance, (): ()) -> u64 {
///         state.cents
///     }
/// }
/// ```
pub trait Actor: Send + Sync + 'static {
    /// The name of this actor type: one token of `[A-Za-z0-9_-]`, unique within a namespace.
    /// An actor's events are stored under the actor id `<ACTOR_TYPE>.<actor id>`, so two actor
    /// types never share a stream. Changing it orphans the stored actors.
    const ACTOR_TYPE: &'static str;

    /// The state of one actor, rebuilt by applying its events to `State::default()` (or to a
    /// snapshot). Serialized into snapshots.
    type State: Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static;

    /// The commands the actor decides on. Serializable so that its size can be checked (and so
    /// that a later runtime can route it to another node); `Clone` so that it can be decided
    /// again after a conflict when [`OnConflict::DecideAgain`](crate::OnConflict) is chosen
    /// (it is cloned only then).
    type Command: Serialize + Clone + Send + 'static;

    /// The actor's events. Mapped to stored events by [`encode_event`](Self::encode_event) and
    /// [`decode_event`](Self::decode_event) (by default serde's externally tagged form, see
    /// [`codec`](crate::codec)).
    type Event: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// What an accepted command answers. Stored with the command's last event, so that a
    /// retried command answers the original reply, also after a restart.
    type Reply: Serialize + DeserializeOwned + Send + 'static;

    /// Why a command is refused. A rejection writes nothing and is not remembered: a retried
    /// command that was rejected is decided again.
    type Rejection: Debug + Send + 'static;

    /// Read-only questions to an actor. Use `()` or an enum; `std::convert::Infallible` if the
    /// type has none.
    type Query: Send + 'static;

    /// What a query answers.
    type QueryReply: Send + 'static;

    /// Decides a command on the current state: the events to store (all in one atomic append)
    /// and the reply, or a rejection. Must not have side effects: it may be called again for
    /// the same command (after a conflict, when deciding again is enabled, or after the
    /// command-id horizon).
    ///
    /// # Errors
    ///
    /// The typed rejection; nothing is written.
    fn decide(
        &self,
        state: &Self::State,
        command: Self::Command,
    ) -> Result<Decision<Self>, Self::Rejection>;

    /// Applies one stored event to the state. Deterministic; must not panic.
    fn apply(&self, state: &mut Self::State, event: &Self::Event);

    /// Answers a read-only query from the current state.
    fn query(&self, state: &Self::State, query: Self::Query) -> Self::QueryReply;

    /// The command to handle when the reminder `name` (set by
    /// [`Decision::set_reminder`]) is due, decided on the current state; `None` to do nothing.
    /// The default does nothing.
    ///
    /// The command gets an id derived from the actor, the reminder's name and its due time, so
    /// a reminder fired twice (a crash between storing its command's events and forgetting it)
    /// is applied once. When the command stores events, the reminder is removed with them
    /// (unless the decision sets it again: a periodic reminder). When it stores nothing
    /// (`None`, a rejection, no events), the reminder is forgotten in memory only: it fires
    /// again after the actor's next activation.
    fn remind(&self, state: &Self::State, name: &str) -> Option<Self::Command> {
        let _ = (state, name);
        None
    }

    /// Writes a typed event as a stored one. The default is [`codec::encode_tagged`].
    ///
    /// # Errors
    ///
    /// [`CodecError`] if the event has no stored form; the command then fails and nothing is
    /// written.
    fn encode_event(&self, event: &Self::Event) -> Result<RawEvent, CodecError> {
        codec::encode_tagged(event)
    }

    /// Reads a stored event (already passed through [`upcast`](Self::upcast)) as a typed one.
    /// The default is [`codec::decode_tagged`].
    ///
    /// # Errors
    ///
    /// [`CodecError`] if it does not decode; activation then fails (never a partial state).
    fn decode_event(&self, raw: RawEvent) -> Result<Self::Event, CodecError> {
        codec::decode_tagged(raw)
    }

    /// Schema evolution: turns a stored event of an old type or shape into the current one
    /// before [`decode_event`](Self::decode_event). The default keeps it as it is.
    ///
    /// # Errors
    ///
    /// [`CodecError::Upcast`] (or any other variant) to refuse the event; activation fails.
    ///
    /// # Examples
    ///
    /// ```
    /// # use aether_actor::{CodecError, RawEvent};
    /// // An old "MoneyAdded { value }" becomes today's "Deposited { cents }".
    /// fn upcast(mut raw: RawEvent) -> Result<RawEvent, CodecError> {
    ///     if raw.event_type == "MoneyAdded" {
    ///         raw.event_type = "Deposited".into();
    ///         if let Some(v) = raw.data.remove("value") {
    ///             raw.data.insert("cents".into(), v);
    ///         }
    ///     }
    ///     Ok(raw)
    /// }
    /// # let raw = RawEvent::new("MoneyAdded", serde_json::json!({"value": 3}).as_object().unwrap().clone());
    /// # assert_eq!(upcast(raw)?.data["cents"], 3);
    /// # Ok::<(), CodecError>(())
    /// ```
    fn upcast(&self, raw: RawEvent) -> Result<RawEvent, CodecError> {
        Ok(raw)
    }
}

/// What [`Actor::decide`] returns for an accepted command: the events to store, in order, the
/// reply, and the effects to run once the events are stored (tell or ask other actors, timers,
/// reminders: see [`then_tell`](Self::then_tell) and the methods after it).
///
/// # Examples
///
/// ```
/// # use aether_actor::Decision;
/// # struct A;
/// # impl aether_actor::Actor for A {
/// #     const ACTOR_TYPE: &'static str = "a";
/// #     type State = (); type Command = (); type Event = (); type Reply = u32;
/// #     type Rejection = (); type Query = (); type QueryReply = ();
/// #     fn decide(&self, _: &(), _: ()) -> Result<Decision<Self>, ()> { Ok(Decision::reply(1)) }
/// #     fn apply(&self, _: &mut (), _: &()) {}
/// #     fn query(&self, _: &(), _: ()) {}
/// # }
/// let nothing_to_store: Decision<A> = Decision::reply(7);
/// assert!(nothing_to_store.events.is_empty());
/// ```
pub struct Decision<A: Actor + ?Sized> {
    /// The events to store, all in one atomic append, at the versions after the current one.
    pub events: Vec<A::Event>,
    /// The reply to the caller.
    pub reply: A::Reply,
    /// Run after the events are stored, in order (see [`crate::effect`]).
    pub(crate) effects: Vec<crate::effect::Effect<A>>,
}

impl<A: Actor + ?Sized> Decision<A> {
    /// Store `events`, answer `reply`.
    pub fn new(events: Vec<A::Event>, reply: A::Reply) -> Self {
        Self {
            events,
            reply,
            effects: Vec::new(),
        }
    }

    /// Store nothing, answer `reply`.
    pub fn reply(reply: A::Reply) -> Self {
        Self {
            events: Vec::new(),
            reply,
            effects: Vec::new(),
        }
    }
}

impl<A: Actor + ?Sized> Debug for Decision<A>
where
    A::Event: Debug,
    A::Reply: Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decision")
            .field("events", &self.events)
            .field("reply", &self.reply)
            .field("effects", &self.effects)
            .finish()
    }
}
