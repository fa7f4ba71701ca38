//! [`Account`]: the actor type the node binary `aether-actor-node` hosts — a bank account
//! whose state also counts its events, so that a query shows how much of the actor's history
//! the answer reflects (what the chaos checker compares against acknowledged commands).
//!
//! On the wire (see [`wire`](super::wire)), with actor type `account`:
//!
//! ```text
//! ask    {"op":"ask","actorId":"acct-1","commandId":"c-1","body":{"Deposit":{"amount":5}}}
//!        → {"ok":{"commandId":"c-1","written":{"first":1,"last":1},"version":1,"reply":5,"duplicate":false}}
//! ask    {"op":"ask","actorId":"acct-1","commandId":"c-2","body":{"Withdraw":{"amount":50}}}
//!        → {"rejected":{"Insufficient":{"balance":5,"wanted":50}}}
//! query  {"op":"query","actorId":"acct-1","body":"Balance"}
//!        → {"ok":{"balance":5,"version":1}}
//! ```

use serde::{Deserialize, Serialize};

use crate::{Actor, Decision};

/// A bank account (see the [module docs](self)).
///
/// # Examples
///
/// ```
/// use aether_actor::cluster::demo::{Account, AccountCommand, AccountQuery, Rejection};
/// use aether_actor::{ActorConfig, Actors, AskError};
/// use aether_core::{ActorId, InMemoryEventStore, Namespace};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let accounts = Actors::new(Namespace::new("demo")?, Account, InMemoryEventStore::new(), ActorConfig::default())?;
/// let id = ActorId::new("acct-1")?;
/// assert_eq!(accounts.ask(&id, AccountCommand::Deposit { amount: 5 }).await?.reply, 5);
/// let refused = accounts.ask(&id, AccountCommand::Withdraw { amount: 50 }).await;
/// assert!(matches!(refused, Err(AskError::Rejected(Rejection::Insufficient { balance: 5, wanted: 50 }))));
/// let balance = accounts.query(&id, AccountQuery::Balance).await?;
/// assert_eq!((balance.balance, balance.version), (5, 1));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Account;

/// What an account is asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountCommand {
    /// Adds `amount`.
    Deposit {
        /// How much.
        amount: u64,
    },
    /// Takes `amount` out, if the balance covers it.
    Withdraw {
        /// How much.
        amount: u64,
    },
}

/// What happened to an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountEvent {
    /// `amount` was added.
    Deposited {
        /// How much.
        amount: u64,
    },
    /// `amount` was taken out.
    Withdrew {
        /// How much.
        amount: u64,
    },
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    /// The balance does not cover the withdrawal.
    Insufficient {
        /// The balance.
        balance: u64,
        /// What was asked.
        wanted: u64,
    },
}

/// The questions an account answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountQuery {
    /// Its balance and version.
    Balance,
}

/// An account's state, and the answer to [`AccountQuery::Balance`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// The balance.
    pub balance: u64,
    /// How many events the state reflects: the actor's version (each command stores one).
    pub version: u64,
}

impl Actor for Account {
    const ACTOR_TYPE: &'static str = "account";
    type State = Balance;
    type Command = AccountCommand;
    type Event = AccountEvent;
    /// The balance after the command.
    type Reply = u64;
    type Rejection = Rejection;
    type Query = AccountQuery;
    type QueryReply = Balance;

    fn decide(
        &self,
        state: &Balance,
        command: AccountCommand,
    ) -> Result<Decision<Self>, Rejection> {
        match command {
            AccountCommand::Deposit { amount } => Ok(Decision::new(
                vec![AccountEvent::Deposited { amount }],
                state.balance.saturating_add(amount),
            )),
            AccountCommand::Withdraw { amount } if amount > state.balance => {
                Err(Rejection::Insufficient {
                    balance: state.balance,
                    wanted: amount,
                })
            }
            AccountCommand::Withdraw { amount } => Ok(Decision::new(
                vec![AccountEvent::Withdrew { amount }],
                state.balance - amount,
            )),
        }
    }

    fn apply(&self, state: &mut Balance, event: &AccountEvent) {
        match event {
            AccountEvent::Deposited { amount } => {
                state.balance = state.balance.saturating_add(*amount);
            }
            AccountEvent::Withdrew { amount } => {
                state.balance = state.balance.saturating_sub(*amount);
            }
        }
        state.version += 1;
    }

    fn query(&self, state: &Balance, AccountQuery::Balance: AccountQuery) -> Balance {
        *state
    }
}
