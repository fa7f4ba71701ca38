//! A "relay" actor for the effect tests: it talks to its peers (same type) and to bank
//! accounts (another type, through a handle it holds), starts timers and sets reminders. Its
//! state is a log of notes, so a test can see what reached it, in order.

use std::time::Duration;

use aether_actor::{Actor, ActorError, AskError, Decision, Recipient};
use aether_core::ActorId;
use serde::{Deserialize, Serialize};

use super::bank::{self, Bank};

/// The behaviour: a handle to the bank accounts (`Actors` on one node, `ClusterActors`
/// across a cluster).
pub(crate) struct Relay<R> {
    pub(crate) bank: R,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Command {
    /// Writes a note.
    Note(String),
    /// Asks the first peer of `path` to `Cycle` with the rest; notes how that ask ended.
    Cycle { path: Vec<String> },
    /// Deposits `cents` into bank account `to` with a tell.
    Pay { to: String, cents: u64 },
    /// Withdraws `cents` from bank account `from` with an ask; notes the result.
    Collect { from: String, cents: u64 },
    /// Tells peer `to` to note `text`.
    Forward { to: String, text: String },
    /// A plain timer `name` that notes `text` after `ms`.
    Timer { name: String, ms: u64, text: String },
    /// Cancels the timer `name`.
    CancelTimer { name: String },
    /// A reminder `name` due after `ms` (its firing notes `reminded <name>`).
    Remind { name: String, ms: u64 },
    /// Cancels the reminder `name`.
    CancelReminder { name: String },
    /// A reminder on a decision without events: refused.
    RemindWithoutEvents,
    /// A reminder with an invalid name: refused.
    RemindBadName,
    /// Stores an event too large for the store, with a tell to bank account `to`.
    PayThenFail { to: String, cents: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Event {
    Noted { text: String },
    Sent { to: String },
    TimerSet { name: String },
    ReminderSet { name: String },
}

impl<R: Recipient<Actor = Bank>> Actor for Relay<R> {
    const ACTOR_TYPE: &'static str = "relay";
    type State = Vec<String>;
    type Command = Command;
    type Event = Event;
    type Reply = usize;
    type Rejection = String;
    type Query = ();
    type QueryReply = Vec<String>;

    fn decide(&self, log: &Vec<String>, command: Command) -> Result<Decision<Self>, String> {
        let len = log.len() + 1;
        let sent = |to: &str| vec![Event::Sent { to: to.to_owned() }];
        Ok(match command {
            Command::Note(text) => Decision::new(vec![Event::Noted { text }], len),
            Command::Cycle { mut path } => {
                if path.is_empty() {
                    return Ok(Decision::new(
                        vec![Event::Noted { text: "end".into() }],
                        len,
                    ));
                }
                let next = path.remove(0);
                Decision::new(sent(&next), len).then_ask_peer(
                    id(&next),
                    Command::Cycle { path },
                    |result| Some(Command::Note(outcome_note(&result))),
                )
            }
            Command::Pay { to, cents } => Decision::new(sent(&to), len).then_tell(
                &self.bank,
                id_or_long(&to),
                bank::Command::Deposit { cents },
            ),
            Command::Collect { from, cents } => Decision::new(sent(&from), len).then_ask(
                &self.bank,
                id(&from),
                bank::Command::Withdraw { cents },
                |result| Some(Command::Note(outcome_note(&result))),
            ),
            Command::Forward { to, text } => {
                Decision::new(sent(&to), len).then_tell_peer(id(&to), Command::Note(text))
            }
            Command::Timer { name, ms, text } => Decision::new(
                vec![Event::TimerSet { name: name.clone() }],
                len,
            )
            .start_timer(name, Duration::from_millis(ms), Command::Note(text)),
            Command::CancelTimer { name } => Decision::reply(log.len()).cancel_timer(name),
            Command::Remind { name, ms } => {
                Decision::new(vec![Event::ReminderSet { name: name.clone() }], len)
                    .set_reminder(name, Duration::from_millis(ms))
            }
            Command::CancelReminder { name } => Decision::new(
                vec![Event::Noted {
                    text: format!("cancel {name}"),
                }],
                len,
            )
            .cancel_reminder(name),
            Command::RemindWithoutEvents => {
                Decision::reply(log.len()).set_reminder("r", Duration::from_millis(1))
            }
            Command::RemindBadName => Decision::new(vec![Event::Noted { text: "x".into() }], len)
                .set_reminder("has space", Duration::from_millis(1)),
            Command::PayThenFail { to, cents } => Decision::new(
                vec![Event::Noted {
                    text: "x".repeat(2 << 20),
                }],
                len,
            )
            .then_tell(&self.bank, id(&to), bank::Command::Deposit { cents }),
        })
    }

    fn apply(&self, log: &mut Vec<String>, event: &Event) {
        log.push(match event {
            Event::Noted { text } => text.clone(),
            Event::Sent { to } => format!("sent to {to}"),
            Event::TimerSet { name } => format!("timer {name}"),
            Event::ReminderSet { name } => format!("reminder {name}"),
        });
    }

    fn query(&self, log: &Vec<String>, (): ()) -> Vec<String> {
        log.clone()
    }

    fn remind(&self, _: &Vec<String>, name: &str) -> Option<Command> {
        Some(Command::Note(format!("reminded {name}")))
    }
}

/// How an ask ended, as a note: `ok <reply>`, `rejected`, `reentrant`, `timeout` or the error.
pub(crate) fn outcome_note<R: std::fmt::Debug, E>(
    result: &Result<aether_actor::Outcome<R>, AskError<E>>,
) -> String {
    match result {
        Ok(outcome) => format!("ok {:?}", outcome.reply),
        Err(AskError::Rejected(_)) => "rejected".into(),
        Err(AskError::Failed(ActorError::Reentrant { .. })) => "reentrant".into(),
        Err(AskError::Failed(ActorError::Timeout { .. })) => "timeout".into(),
        Err(AskError::Failed(other)) => format!("failed: {other}"),
    }
}

pub(crate) fn id(name: &str) -> ActorId {
    ActorId::new(name).unwrap()
}

/// `name`, or an id too long once prefixed with the bank's actor type (`"long"`).
fn id_or_long(name: &str) -> ActorId {
    if name == "long" {
        ActorId::new("z".repeat(ActorId::MAX_LEN)).unwrap()
    } else {
        id(name)
    }
}
