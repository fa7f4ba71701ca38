//! The model-based test's harness, shared by `model.rs` (in-memory store) and `jetstream.rs`:
//! random commands (and retries of earlier commands) to several actors, with random
//! passivations and restarts. After every step each actor's state equals a reference model's
//! after the same accepted commands; at the end each actor's stored history is exactly the
//! accepted commands' events, in order, each command's events under its command id.

use aether_actor::{ActorConfig, AskError, AskOptions, CommandId, SnapshotPolicy};
use aether_core::SnapshotStore;
use proptest::prelude::*;

use super::bank::{Answer, Command, Model, Query, Rejection};
use super::scenarios::{history, id, spawn};

const ACTORS: usize = 3;

#[derive(Debug, Clone)]
pub(crate) enum Op {
    Ask {
        actor: usize,
        command: Command,
    },
    /// Re-sends the `n`-th earlier ask (modulo their count) with its command id.
    Retry {
        n: usize,
    },
    Passivate {
        actor: usize,
    },
    Restart,
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        4 => (1u64..50).prop_map(|cents| Command::Deposit { cents }),
        3 => (1u64..80).prop_map(|cents| Command::Withdraw { cents }),
        1 => (1u64..30, 1u32..4).prop_map(|(cents, parts)| Command::Split { cents, parts }),
        1 => Just(Command::Check),
    ]
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0..ACTORS, command()).prop_map(|(actor, command)| Op::Ask { actor, command }),
        3 => any::<usize>().prop_map(|n| Op::Retry { n }),
        2 => (0..ACTORS).prop_map(|actor| Op::Passivate { actor }),
        1 => Just(Op::Restart),
    ]
}

/// One earlier ask, as the test remembers it.
struct Sent {
    actor: usize,
    command: Command,
    id: CommandId,
    /// `Some((reply, version))` if it was accepted with events (a retry must answer exactly
    /// that); `None` if it was rejected (a retry is decided again).
    stored: Option<(u64, u64)>,
}

pub(crate) async fn run<S: SnapshotStore + Clone + 'static>(
    store: S,
    ops: Vec<Op>,
    snapshots: Option<u64>,
) {
    let config = ActorConfig {
        snapshots: snapshots.map_or(SnapshotPolicy::Never, SnapshotPolicy::EveryEvents),
        idle_timeout: None,
        ..ActorConfig::default()
    };
    let ids: Vec<_> = (0..ACTORS).map(|i| id(&format!("m{i}"))).collect();
    let mut actors = spawn(&store, config.clone());
    let mut models = vec![Model::default(); ACTORS];
    // Per actor: (event type, cents) of every accepted command's events, and their command ids.
    let mut expected: Vec<Vec<(String, u64, CommandId)>> = vec![Vec::new(); ACTORS];
    let mut sent: Vec<Sent> = Vec::new();

    for op in ops {
        match op {
            Op::Ask { actor, command } => {
                let id = CommandId::generate();
                let options = AskOptions::default().command_id(id.clone());
                let result = actors.ask_with(&ids[actor], command.clone(), options).await;
                let before = models[actor].accepted.len();
                let want = models[actor].step(&command);
                match (result, want) {
                    (Ok(outcome), Some(reply)) => {
                        assert_eq!(outcome.reply, reply, "{command:?}");
                        assert!(!outcome.duplicate);
                        let events = expect_events(&command, &id);
                        assert_eq!(outcome.written.map_or(0, |w| w.len()), events.len() as u64);
                        expected[actor].extend(events);
                        let stored = (models[actor].accepted.len() > before)
                            .then_some((reply, outcome.version));
                        // Check stores nothing: its reply is remembered only while the actor
                        // stays active, so it is not retried here.
                        if command != Command::Check {
                            sent.push(Sent {
                                actor,
                                command,
                                id,
                                stored,
                            });
                        }
                    }
                    (Err(AskError::Rejected(Rejection::Overdraft { .. })), None) => {
                        sent.push(Sent {
                            actor,
                            command,
                            id,
                            stored: None,
                        });
                    }
                    (result, want) => panic!("{command:?}: got {result:?}, model {want:?}"),
                }
            }
            Op::Retry { n } => {
                if sent.is_empty() {
                    continue;
                }
                let n = n % sent.len();
                let original = &sent[n];
                let actor = original.actor;
                let options = AskOptions::default().command_id(original.id.clone());
                let result = actors
                    .ask_with(&ids[actor], original.command.clone(), options)
                    .await;
                match original.stored {
                    Some((reply, version)) => {
                        let outcome = result.expect("a duplicate answers its stored outcome");
                        assert!(outcome.duplicate);
                        assert_eq!((outcome.reply, outcome.version), (reply, version));
                    }
                    None => {
                        // A rejected command is decided again on today's state.
                        let command = original.command.clone();
                        let id = original.id.clone();
                        let want = models[actor].step(&command);
                        match (result, want) {
                            (Ok(outcome), Some(reply)) => {
                                assert_eq!(outcome.reply, reply);
                                expected[actor].extend(expect_events(&command, &id));
                                sent[n].stored = Some((reply, outcome.version));
                            }
                            (Err(AskError::Rejected(_)), None) => {}
                            (result, want) => {
                                panic!("retry {command:?}: got {result:?}, model {want:?}")
                            }
                        }
                    }
                }
            }
            Op::Passivate { actor } => {
                actors.passivate(&ids[actor]).await;
            }
            Op::Restart => {
                actors.shutdown().await;
                actors = spawn(&store, config.clone());
            }
        }
        for (actor, model) in models.iter().enumerate() {
            match actors.query(&ids[actor], Query::State).await {
                Ok(Answer::State(account)) => assert_eq!(account, model.account, "actor {actor}"),
                other => panic!("{other:?}"),
            }
        }
    }

    for actor in 0..ACTORS {
        let stored = history(&actors, &ids[actor]).await;
        let got: Vec<(String, u64, CommandId)> = stored
            .iter()
            .map(|e| {
                (
                    e.event_type.clone(),
                    e.data["cents"].as_u64().unwrap(),
                    CommandId::new(e.command_id.as_deref().unwrap()).unwrap(),
                )
            })
            .collect();
        assert_eq!(got, expected[actor], "history of actor {actor}");
        let versions: Vec<u64> = stored.iter().map(|e| e.version).collect();
        assert_eq!(versions, (1..=stored.len() as u64).collect::<Vec<_>>());
    }
    actors.shutdown().await;
    assert_eq!(actors.stats().active, 0);
}

/// The events the bank stores for an accepted command.
fn expect_events(command: &Command, id: &CommandId) -> Vec<(String, u64, CommandId)> {
    match *command {
        Command::Deposit { cents } => vec![("Deposited".into(), cents, id.clone())],
        Command::Withdraw { cents } => vec![("Withdrawn".into(), cents, id.clone())],
        Command::Split { cents, parts } => {
            let parts = u64::from(parts.max(1));
            let mut events: Vec<_> = (0..parts - 1)
                .map(|_| ("Deposited".into(), cents / parts, id.clone()))
                .collect();
            events.push((
                "Deposited".into(),
                cents - (cents / parts) * (parts - 1),
                id.clone(),
            ));
            events
        }
        _ => Vec::new(),
    }
}
