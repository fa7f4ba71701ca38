//! A bank account actor for the tests, with commands that exercise every path: events, no
//! events, several events, a rejection, a panic, an oversized event.

use aether_actor::{Actor, CodecError, Decision, RawEvent};
use serde::{Deserialize, Serialize};

/// The behaviour (no configuration).
#[derive(Debug, Default)]
pub(crate) struct Bank;

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Account {
    pub(crate) balance: u64,
    pub(crate) operations: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Command {
    Deposit {
        cents: u64,
    },
    Withdraw {
        cents: u64,
    },
    /// Deposits `cents` in `parts` events (one atomic append).
    Split {
        cents: u64,
        parts: u32,
    },
    /// Decides nothing to store; replies the balance.
    Check,
    /// `decide` panics.
    Panic,
    /// One event of about `bytes` bytes.
    Big {
        bytes: usize,
    },
    /// A large command (the payload is ignored).
    Blob {
        data: String,
    },
    /// Decides an event with no stored form (not a JSON object).
    Bare,
    /// Decides an event whose encoding panics.
    PanicEncode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Event {
    Deposited {
        cents: u64,
    },
    Withdrawn {
        cents: u64,
    },
    Noted {
        text: String,
    },
    /// No stored form with the default codec.
    Bare(u64),
}

/// The text of a `Noted` event whose encoding panics.
pub(crate) const PANIC_TEXT: &str = "panic while encoding";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Rejection {
    Overdraft { balance: u64, wanted: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Query {
    Balance,
    State,
    Panic,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Answer {
    Balance(u64),
    State(Account),
}

impl Actor for Bank {
    const ACTOR_TYPE: &'static str = "account";
    type State = Account;
    type Command = Command;
    type Event = Event;
    type Reply = u64;
    type Rejection = Rejection;
    type Query = Query;
    type QueryReply = Answer;

    fn decide(&self, state: &Account, command: Command) -> Result<Decision<Self>, Rejection> {
        let balance = state.balance;
        match command {
            Command::Deposit { cents } => Ok(Decision::new(
                vec![Event::Deposited { cents }],
                balance + cents,
            )),
            Command::Withdraw { cents } if cents > balance => Err(Rejection::Overdraft {
                balance,
                wanted: cents,
            }),
            Command::Withdraw { cents } => Ok(Decision::new(
                vec![Event::Withdrawn { cents }],
                balance - cents,
            )),
            Command::Split { cents, parts } => {
                let parts = u64::from(parts.max(1));
                let mut events: Vec<Event> = (0..parts - 1)
                    .map(|_| Event::Deposited {
                        cents: cents / parts,
                    })
                    .collect();
                events.push(Event::Deposited {
                    cents: cents - (cents / parts) * (parts - 1),
                });
                Ok(Decision::new(events, balance + cents))
            }
            Command::Check => Ok(Decision::reply(balance)),
            Command::Panic => panic!("decide panicked on purpose"),
            Command::Big { bytes } => Ok(Decision::new(
                vec![Event::Noted {
                    text: "x".repeat(bytes),
                }],
                balance,
            )),
            Command::Blob { .. } => Ok(Decision::reply(balance)),
            Command::Bare => Ok(Decision::new(vec![Event::Bare(1)], balance)),
            Command::PanicEncode => Ok(Decision::new(
                vec![Event::Noted {
                    text: PANIC_TEXT.into(),
                }],
                balance,
            )),
        }
    }

    fn apply(&self, state: &mut Account, event: &Event) {
        state.operations += 1;
        match event {
            Event::Deposited { cents } => state.balance += cents,
            Event::Withdrawn { cents } => state.balance -= cents,
            Event::Noted { .. } | Event::Bare(_) => {}
        }
    }

    fn encode_event(&self, event: &Event) -> Result<RawEvent, CodecError> {
        if matches!(event, Event::Noted { text } if text == PANIC_TEXT) {
            panic!("encode_event panicked on purpose");
        }
        aether_actor::codec::encode_tagged(event)
    }

    /// Version 0 of the bank stored `MoneyAdded { value }`; today it is `Deposited { cents }`.
    fn upcast(&self, mut raw: RawEvent) -> Result<RawEvent, CodecError> {
        if raw.event_type == "MoneyAdded" {
            raw.event_type = "Deposited".into();
            let value = raw.data.remove("value").ok_or_else(|| CodecError::Upcast {
                event_type: "MoneyAdded".into(),
                reason: "no value".into(),
            })?;
            raw.data.insert("cents".into(), value);
        }
        Ok(raw)
    }

    fn query(&self, state: &Account, query: Query) -> Answer {
        match query {
            Query::Balance => Answer::Balance(state.balance),
            Query::State => Answer::State(state.clone()),
            Query::Panic => panic!("query panicked on purpose"),
        }
    }
}

/// The reference model: what `decide` + `apply` should produce, as plain code.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Model {
    pub(crate) account: Account,
    /// Event count per accepted command, in order.
    pub(crate) accepted: Vec<u64>,
}

impl Model {
    /// Applies `command` if the bank would accept it; returns the expected reply, or `None`
    /// for a rejection.
    pub(crate) fn step(&mut self, command: &Command) -> Option<u64> {
        match *command {
            Command::Deposit { cents } => {
                self.account.balance += cents;
                self.account.operations += 1;
                self.accepted.push(1);
            }
            Command::Withdraw { cents } if cents > self.account.balance => return None,
            Command::Withdraw { cents } => {
                self.account.balance -= cents;
                self.account.operations += 1;
                self.accepted.push(1);
            }
            Command::Split { cents, parts } => {
                let parts = u64::from(parts.max(1));
                self.account.balance += cents;
                self.account.operations += parts;
                self.accepted.push(parts);
            }
            Command::Check | Command::Blob { .. } => {}
            Command::Panic | Command::Big { .. } | Command::Bare | Command::PanicEncode => {
                unreachable!("not in the model")
            }
        }
        Some(self.account.balance)
    }
}
