//! # Aether actors on one node
//!
//! Event-sourced virtual actors on any [`SnapshotStore`](aether_core::SnapshotStore) (the
//! in-memory store, JetStream, …):
//!
//! - **Define** an actor type by implementing [`Actor`]: its state, a decision from a command
//!   to events or a typed rejection ([`Actor::decide`]), [`Actor::apply`], read-only
//!   [`Actor::query`]; typed events mapped to stored events ([`codec`]) with an upcast hook
//!   for old event types.
//! - **Address** actors by id through [`Actors`], one handle per namespace and actor type:
//!   [`ask`](Actors::ask) (outcome: versions written and reply), [`tell`](Actors::tell) (fire
//!   and forget, losses counted), [`query`](Actors::query). One task and one bounded mailbox
//!   per active actor: an actor handles one message at a time, in arrival order; actors run
//!   concurrently. A query to an idle actor is answered on the caller's task from the state
//!   the actor lends its mailbox while it waits: the same answer, without the hop.
//! - **Activation** loads the latest snapshot and the events after it (the store's `load`);
//!   an undecodable record fails activation with a typed error, never a partial state.
//!   Concurrent first messages activate an actor once.
//! - **Persistence** at the observed version + 1, all events of a decision in one atomic
//!   append. A version conflict reloads the actor and answers [`ActorError::Conflict`]
//!   (deciding again is the opt-in [`OnConflict::DecideAgain`]).
//! - **Exactly-once**: every command has a [`CommandId`] (given or generated) written on its
//!   events; each actor remembers its recent commands (rebuilt on replay, kept in snapshots)
//!   and answers a retried command with the stored [`Outcome`] instead of deciding again.
//! - **Snapshots** every N events ([`SnapshotPolicy`], off by default), **passivation** when
//!   idle and beyond an active-actor limit (least recently used first), and
//!   [`shutdown`](Actors::shutdown).
//! - **Actors talking to actors** through [effects](effect) a decision declares and the
//!   runtime runs after its events are stored (see below).
//! - **Publication**: [`Actors::with_bus`] publishes every stored event on any
//!   [`Bus`](aether_core::Bus) after its append succeeded, never before — best effort, **at
//!   most once** (a crash between storing and publishing loses the publication; drops and
//!   timeouts are counted). Subscribers that need **every** event read the store's
//!   [`EventFeed`](aether_core::EventFeed) from a checkpoint they keep: **at least once**, in
//!   order per actor, whatever happened to the live publish.
//!
//! The design and its reasons: `docs/adr/0008-actor-runtime.md`.
//!
//! # Actors talking to actors
//!
//! [`Actor::decide`] stays synchronous and pure; a decision *declares* effects, which the
//! runtime runs in the actor's task once the decision's events are stored, in order, before
//! the actor's next message and before the caller gets its outcome:
//!
//! - [`Decision::then_tell`] / [`then_ask`](Decision::then_ask) to an actor of another type
//!   (through its handle, which the behaviour holds: an [`Actors`], or a `ClusterActors` to
//!   reach it on whichever node serves it; see [`Recipient`]), and
//!   [`then_tell_peer`](Decision::then_tell_peer) / [`then_ask_peer`](Decision::then_ask_peer)
//!   to an actor of the same type. An ask's result is mapped to an optional follow-up command
//!   for the asking actor, handled in the same turn (Akka's `context.ask`).
//! - [`start_timer`](Decision::start_timer) / [`cancel_timer`](Decision::cancel_timer): a
//!   command to itself later. **In memory**: dropped by passivation, shutdown or a restart.
//! - [`set_reminder`](Decision::set_reminder) / [`cancel_reminder`](Decision::cancel_reminder):
//!   **persisted** with the decision's events (and in snapshots); when due, the runtime's
//!   reminder scheduler delivers it — activating the actor if it was passivated — and the
//!   runtime decides the command [`Actor::remind`] returns.
//!
//! **Exactly-once.** Effects run only after their events are stored, and only for the decision
//! that was stored: a retried command answered from the command index runs no effect again.
//! Each command an effect sends carries an id derived from its cause ([`CommandId::derived`]:
//! `<id>.e<index>`, the follow-up `<id>.e<index>.r`), so re-sending it is answered as a
//! duplicate. What is *not* covered: a crash after the events are stored and before the
//! effects ran loses those effects (the retry is a duplicate and does not run them); use a
//! reminder (persisted with the events) for work that must happen.
//!
//! **Reentrancy.** An actor's turn includes its effects, so an ask made by an effect waits for
//! the callee's whole turn. Asks carry the chain of actors waiting; an ask to an actor already
//! in the chain (A asks B, whose effect asks A; or A asks itself) fails at once with
//! [`ActorError::Reentrant`] instead of waiting for itself. Two actors whose *independent*
//! turns ask each other at the same moment (a cross wait no chain sees) end with the asks'
//! timeout ([`ActorConfig::ask`]), never a silent deadlock.
//!
//! Effect failures (an undeliverable tell, a failed ask, a timer whose mailbox is full) are
//! counted in [`ActorStats::effect_failures`] and logged; they never stop the actor.
//!
//! ```
//! use aether_actor::{Actor, ActorConfig, Actors, Decision};
//! use aether_core::{ActorId, InMemoryEventStore, Namespace};
//! use serde::{Deserialize, Serialize};
//!
//! struct Account;
//!
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! enum Command { Deposit { cents: u64 }, Transfer { to: String, cents: u64 } }
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! enum Event { Deposited { cents: u64 }, Sent { to: String, cents: u64 } }
//!
//! impl Actor for Account {
//!     const ACTOR_TYPE: &'static str = "account";
//!     type State = u64;
//!     type Command = Command;
//!     type Event = Event;
//!     type Reply = u64;
//!     type Rejection = String;
//!     type Query = ();
//!     type QueryReply = u64;
//!
//!     fn decide(&self, balance: &u64, command: Command) -> Result<Decision<Self>, String> {
//!         match command {
//!             Command::Deposit { cents } => Ok(Decision::new(vec![Event::Deposited { cents }], balance + cents)),
//!             Command::Transfer { cents, .. } if cents > *balance => Err("overdraft".into()),
//!             Command::Transfer { to, cents } => {
//!                 let to_id = ActorId::new(to.as_str()).map_err(|e| e.to_string())?;
//!                 // Stored first; then the deposit is told to the peer, with a derived command id.
//!                 Ok(Decision::new(vec![Event::Sent { to, cents }], balance - cents)
//!                     .then_tell_peer(to_id, Command::Deposit { cents }))
//!             }
//!         }
//!     }
//!
//!     fn apply(&self, balance: &mut u64, event: &Event) {
//!         match event {
//!             Event::Deposited { cents } => *balance += cents,
//!             Event::Sent { cents, .. } => *balance -= cents,
//!         }
//!     }
//!
//!     fn query(&self, balance: &u64, (): ()) -> u64 {
//!         *balance
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let accounts = Actors::new(Namespace::new("bank")?, Account, InMemoryEventStore::new(), ActorConfig::default())?;
//! let (alice, bob) = (ActorId::new("alice")?, ActorId::new("bob")?);
//! accounts.ask(&alice, Command::Deposit { cents: 100 }).await?;
//! let sent = accounts.ask(&alice, Command::Transfer { to: "bob".into(), cents: 40 }).await?;
//! assert_eq!(sent.reply, 60);
//! // The tell is in Bob's mailbox before Alice's outcome returned; this query queues behind it.
//! assert_eq!(accounts.query(&bob, ()).await?, 40);
//! # Ok(())
//! # }
//! ```
//!
//! # Example
//!
//! ```
//! use aether_actor::{Actor, ActorConfig, ActorError, Actors, AskError, AskOptions, CommandId, Decision};
//! use aether_core::{ActorId, InMemoryEventStore, Namespace};
//! use serde::{Deserialize, Serialize};
//!
//! struct Account;
//!
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! enum Command { Deposit { cents: u64 }, Withdraw { cents: u64 } }
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! enum Event { Deposited { cents: u64 }, Withdrawn { cents: u64 } }
//!
//! #[derive(Debug, PartialEq)]
//! enum Rejection { Overdraft { balance: u64 } }
//!
//! impl Actor for Account {
//!     const ACTOR_TYPE: &'static str = "account";
//!     type State = u64;
//!     type Command = Command;
//!     type Event = Event;
//!     type Reply = u64;
//!     type Rejection = Rejection;
//!     type Query = ();
//!     type QueryReply = u64;
//!
//!     fn decide(&self, balance: &u64, command: Command) -> Result<Decision<Self>, Rejection> {
//!         match command {
//!             Command::Deposit { cents } => Ok(Decision::new(vec![Event::Deposited { cents }], balance + cents)),
//!             Command::Withdraw { cents } if cents > *balance => Err(Rejection::Overdraft { balance: *balance }),
//!             Command::Withdraw { cents } => Ok(Decision::new(vec![Event::Withdrawn { cents }], balance - cents)),
//!         }
//!     }
//!
//!     fn apply(&self, balance: &mut u64, event: &Event) {
//!         match event {
//!             Event::Deposited { cents } => *balance += cents,
//!             Event::Withdrawn { cents } => *balance -= cents,
//!         }
//!     }
//!
//!     fn query(&self, balance: &u64, (): ()) -> u64 {
//!         *balance
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let accounts = Actors::new(Namespace::new("bank")?, Account, InMemoryEventStore::new(), ActorConfig::default())?;
//! let alice = ActorId::new("alice")?;
//!
//! accounts.ask(&alice, Command::Deposit { cents: 100 }).await?;
//!
//! // A rejected overdraft writes nothing.
//! let err = accounts.ask(&alice, Command::Withdraw { cents: 500 }).await.unwrap_err();
//! assert_eq!(err.rejection(), Some(&Rejection::Overdraft { balance: 100 }));
//!
//! // A retried command (same id) is applied once and answers its original outcome.
//! let id = CommandId::generate();
//! let first = accounts.ask_with(&alice, Command::Withdraw { cents: 30 }, AskOptions::default().command_id(id.clone())).await?;
//! let retry = accounts.ask_with(&alice, Command::Withdraw { cents: 30 }, AskOptions::default().command_id(id)).await?;
//! assert_eq!((first.reply, retry.reply, retry.duplicate), (70, 70, true));
//! assert_eq!(accounts.query(&alice, ()).await?, 70);
//! accounts.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod actor;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod codec;
mod command_id;
mod config;
pub mod effect;
mod error;
pub mod metrics;
mod outcome;
#[cfg(feature = "prometheus")]
pub mod prometheus;
mod runtime;

pub use actor::{Actor, Decision};
pub use codec::{CodecError, RawEvent};
pub use command_id::{CommandId, InvalidCommandId};
pub use config::{
    ActorConfig, AskOptions, InvalidConfig, OnConflict, QueryOptions, SnapshotPolicy, WhenFull,
};
pub use effect::Recipient;
pub use error::{ActivationError, ActivationFailure, ActorError, AskError};
pub use metrics::ActorStats;
pub use outcome::{Outcome, VersionRange};
pub use runtime::{Actors, AskResult};
