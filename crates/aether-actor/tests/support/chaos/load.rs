//! The clients of the chaos test: tasks that send commands (each with its own command id) and
//! queries to random actors through a client node, and record what happened and when.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aether_actor::cluster::ClusterActors;
use aether_actor::cluster::demo::{Account, AccountCommand, AccountQuery};
use aether_actor::{ActorError, AskError, AskOptions, CommandId};
use aether_core::ActorId;
use aether_nats::JetStreamEventStore;
use tokio::time::Instant;

pub(crate) type Client = ClusterActors<Account, JetStreamEventStore>;

/// What one client saw.
#[derive(Debug, Default)]
pub(crate) struct History {
    pub(crate) commands: Vec<CommandRecord>,
    pub(crate) queries: Vec<QueryRecord>,
}

/// One command: sent once, retried (same id) after a timeout or an error.
#[derive(Debug, Clone)]
pub(crate) struct CommandRecord {
    pub(crate) actor: usize,
    pub(crate) command_id: String,
    pub(crate) sent: Instant,
    pub(crate) outcome: CommandOutcome,
    /// Attempts that timed out or failed before the last one.
    pub(crate) retried: u32,
}

#[derive(Debug, Clone)]
pub(crate) enum CommandOutcome {
    /// Acknowledged: stored at `version`, acknowledged at `at`.
    Acked { version: u64, at: Instant },
    /// No answer within the deadline, retries included: applied at most once.
    Unknown { last_error: String },
}

/// One query answered with the actor's `version`.
#[derive(Debug, Clone)]
pub(crate) struct QueryRecord {
    pub(crate) actor: usize,
    pub(crate) sent: Instant,
    pub(crate) version: u64,
}

/// A small deterministic generator (xorshift64*), seeded per client.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

pub(crate) fn actor_id(actor: usize) -> ActorId {
    ActorId::new(format!("acct-{actor}")).expect("valid id")
}

/// One client: until `stop`, a query (one time in four) or a deposit to a random actor among
/// `actors`, one call at a time. A command that times out or fails is sent again with the
/// same command id, up to `attempts` times in all.
pub(crate) async fn client(
    via: Client,
    number: usize,
    seed: u64,
    actors: usize,
    deadline: Duration,
    attempts: u32,
    stop: Arc<AtomicBool>,
) -> History {
    let mut rng = Rng::new(seed ^ (number as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut history = History::default();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let actor = rng.below(actors as u64) as usize;
        let id = actor_id(actor);
        if rng.below(4) == 0 {
            let sent = Instant::now();
            // A query that fails is not a violation (it promised nothing); only the answers
            // are checked.
            if let Ok(balance) = via.query(&id, AccountQuery::Balance).await {
                history.queries.push(QueryRecord {
                    actor,
                    sent,
                    version: balance.version,
                });
            }
            continue;
        }
        n += 1;
        let command_id = format!("c{number}-{n}");
        let options = AskOptions {
            timeout: deadline,
            ..AskOptions::default()
        }
        .command_id(CommandId::new(command_id.clone()).expect("valid command id"));
        let sent = Instant::now();
        let mut retried = 0;
        let outcome = loop {
            let result = via
                .ask_with(&id, AccountCommand::Deposit { amount: 1 }, options.clone())
                .await;
            match result {
                Ok(outcome) => {
                    break CommandOutcome::Acked {
                        version: outcome.version,
                        at: Instant::now(),
                    };
                }
                Err(AskError::Rejected(r)) => panic!("a deposit was rejected: {r:?}"),
                Err(AskError::Failed(e)) => {
                    retried += 1;
                    if retried >= attempts {
                        break CommandOutcome::Unknown {
                            last_error: describe(&e),
                        };
                    }
                }
            }
        };
        history.commands.push(CommandRecord {
            actor,
            command_id,
            sent,
            outcome,
            retried,
        });
    }
    history
}

fn describe(error: &ActorError) -> String {
    match error {
        ActorError::Timeout { .. } => "timeout".to_owned(),
        other => other.to_string(),
    }
}
