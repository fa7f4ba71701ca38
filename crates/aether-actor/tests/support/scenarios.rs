//! Scenarios that must hold on every store: run by `local.rs` on the in-memory store and by
//! `jetstream.rs` on JetStream. Each takes a fresh store (a namespace of its own) that can be
//! cloned to "restart" the runtime on the same data.

use std::collections::BTreeSet;

use aether_actor::{
    ActivationFailure, ActorConfig, ActorError, Actors, AskError, AskOptions, CommandId,
    OnConflict, SnapshotPolicy, WhenFull,
};
use aether_core::{ActorId, Event, Namespace, SnapshotStore};

use super::bank::{Answer, Bank, Command, Query, Rejection};

pub(crate) fn spawn<S: SnapshotStore + Clone + 'static>(
    store: &S,
    config: ActorConfig,
) -> Actors<Bank, S> {
    Actors::new(Namespace::new("bank").unwrap(), Bank, store.clone(), config).unwrap()
}

pub(crate) fn id(name: &str) -> ActorId {
    ActorId::new(name).unwrap()
}

pub(crate) async fn balance<S: SnapshotStore + Clone + 'static>(
    actors: &Actors<Bank, S>,
    who: &ActorId,
) -> u64 {
    match actors.query(who, Query::Balance).await.unwrap() {
        Answer::Balance(b) => b,
        other => panic!("{other:?}"),
    }
}

/// The actor's stored history.
pub(crate) async fn history<S: SnapshotStore + Clone + 'static>(
    actors: &Actors<Bank, S>,
    who: &ActorId,
) -> Vec<Event> {
    let stream = actors.stream_id(who).unwrap();
    let replay = actors.store().events_with_errors(&stream, 0).await.unwrap();
    assert!(replay.errors.is_empty(), "{:?}", replay.errors);
    replay.events
}

/// A command retried after its reply was lost, on a state that changed since (other commands,
/// a passivation, a restart): applied once, answered with its original outcome.
pub(crate) async fn retried_command_after_lost_reply<S: SnapshotStore + Clone + 'static>(store: S) {
    let alice = id("alice");
    let actors = spawn(&store, ActorConfig::default());
    actors
        .ask(&alice, Command::Deposit { cents: 100 })
        .await
        .unwrap();
    let command_id = CommandId::generate();
    let options = AskOptions::default().command_id(command_id.clone());
    let original = actors
        .ask_with(&alice, Command::Withdraw { cents: 30 }, options.clone())
        .await
        .unwrap();
    // The reply is "lost"; meanwhile the state changes.
    actors
        .ask(&alice, Command::Deposit { cents: 5 })
        .await
        .unwrap();
    // Retry on the same runtime: answered from the index.
    let again = actors
        .ask_with(&alice, Command::Withdraw { cents: 30 }, options.clone())
        .await
        .unwrap();
    assert!(again.duplicate && !original.duplicate);
    assert_eq!(
        (again.reply, again.written, again.version),
        (original.reply, original.written, original.version)
    );
    // Retry after a passivation (rebuilt by replay) and after a restart.
    assert!(actors.passivate(&alice).await);
    let after_passivation = actors
        .ask_with(&alice, Command::Withdraw { cents: 30 }, options.clone())
        .await
        .unwrap();
    assert!(after_passivation.duplicate);
    assert_eq!(after_passivation.reply, 70);
    actors.shutdown().await;
    let restarted = spawn(&store, ActorConfig::default());
    let after_restart = restarted
        .ask_with(&alice, Command::Withdraw { cents: 30 }, options)
        .await
        .unwrap();
    assert!(after_restart.duplicate);
    assert_eq!(
        (after_restart.reply, after_restart.written),
        (70, original.written)
    );
    // Applied once: 100 - 30 + 5.
    assert_eq!(balance(&restarted, &alice).await, 75);
    let stored = history(&restarted, &alice).await;
    let with_id: Vec<_> = stored
        .iter()
        .filter(|e| e.command_id.as_deref() == Some(command_id.as_str()))
        .collect();
    assert_eq!(with_id.len(), 1);
    assert_eq!(stored.len(), 3);
    restarted.shutdown().await;
}

/// Many tasks ask one actor at once: each command applied once, versions contiguous, each
/// reply the balance after the deposits applied before it.
pub(crate) async fn many_tasks_ask_one_actor<S: SnapshotStore + Clone + 'static>(
    store: S,
    tasks: u64,
) {
    let bob = id("bob");
    let actors = spawn(
        &store,
        ActorConfig {
            mailbox_capacity: 8,
            ..ActorConfig::default()
        },
    );
    let mut handles = Vec::new();
    for i in 1..=tasks {
        let actors = actors.clone();
        let bob = bob.clone();
        handles.push(tokio::spawn(async move {
            let options = AskOptions::default().when_full(WhenFull::Wait);
            let outcome = actors
                .ask_with(&bob, Command::Deposit { cents: i }, options)
                .await
                .unwrap();
            (i, outcome)
        }));
    }
    let mut outcomes = Vec::new();
    for handle in handles {
        outcomes.push(handle.await.unwrap());
    }
    outcomes.sort_by_key(|(_, o)| o.version);
    let versions: Vec<u64> = outcomes.iter().map(|(_, o)| o.version).collect();
    assert_eq!(
        versions,
        (1..=tasks).collect::<Vec<_>>(),
        "contiguous, each once"
    );
    let mut running = 0;
    for (cents, outcome) in &outcomes {
        running += cents;
        assert_eq!(outcome.reply, running, "reply in the order applied");
        let written = outcome.written.unwrap();
        assert_eq!(
            (written.first, written.last),
            (outcome.version, outcome.version)
        );
    }
    let stored = history(&actors, &bob).await;
    let amounts: Vec<u64> = stored
        .iter()
        .map(|e| e.data["cents"].as_u64().unwrap())
        .collect();
    let applied: Vec<u64> = outcomes.iter().map(|(c, _)| *c).collect();
    assert_eq!(amounts, applied, "stored in the order the replies say");
    assert_eq!(
        stored
            .iter()
            .map(|e| e.command_id.clone().unwrap())
            .collect::<BTreeSet<_>>()
            .len() as u64,
        tasks
    );
    assert_eq!(balance(&actors, &bob).await, tasks * (tasks + 1) / 2);
    actors.shutdown().await;
}

/// Bad input fails that one command with a typed error; nothing is written; the actor and the
/// runtime keep serving.
pub(crate) async fn bad_input_fails_alone<S: SnapshotStore + Clone + 'static>(store: S) {
    let carol = id("carol");
    let actors = spawn(
        &store,
        ActorConfig {
            max_command_bytes: 4096,
            ..ActorConfig::default()
        },
    );
    actors
        .ask(&carol, Command::Deposit { cents: 10 })
        .await
        .unwrap();

    // An id that is valid alone but too long once prefixed with the actor type.
    let long = ActorId::new("x".repeat(ActorId::MAX_LEN)).unwrap();
    let err = actors
        .ask(&long, Command::Deposit { cents: 1 })
        .await
        .unwrap_err();
    assert!(
        matches!(err, AskError::Failed(ActorError::InvalidActorId { .. })),
        "{err}"
    );
    assert!(matches!(
        actors.query(&long, Query::Balance).await,
        Err(ActorError::InvalidActorId { .. })
    ));

    let blob = Command::Blob {
        data: "b".repeat(10_000),
    };
    let err = actors.ask(&carol, blob).await.unwrap_err();
    assert!(
        matches!(err, AskError::Failed(ActorError::CommandTooLarge { limit: 4096, size }) if size > 4096),
        "{err}"
    );

    let err = actors
        .ask(&carol, Command::Big { bytes: 2 << 20 })
        .await
        .unwrap_err();
    assert!(
        matches!(err, AskError::Failed(ActorError::InvalidEvents { .. })),
        "{err}"
    );

    let err = actors.ask(&carol, Command::Panic).await.unwrap_err();
    assert!(
        matches!(&err, AskError::Failed(ActorError::Panicked { message, .. }) if message.contains("on purpose")),
        "{err}"
    );
    assert!(matches!(
        actors.query(&carol, Query::Panic).await,
        Err(ActorError::Panicked { .. })
    ));

    let err = actors
        .ask(&carol, Command::Withdraw { cents: 11 })
        .await
        .unwrap_err();
    assert_eq!(
        err.rejection(),
        Some(&Rejection::Overdraft {
            balance: 10,
            wanted: 11
        })
    );

    // Nothing written by any of them; the actor still serves.
    assert_eq!(history(&actors, &carol).await.len(), 1);
    let outcome = actors
        .ask(&carol, Command::Deposit { cents: 1 })
        .await
        .unwrap();
    assert_eq!((outcome.version, outcome.reply), (2, 11));
    actors
        .ask(&id("dave"), Command::Deposit { cents: 1 })
        .await
        .unwrap();
    actors.shutdown().await;
}

/// Activation loads the latest snapshot and replays only the tail; the command index survives
/// in the snapshot.
pub(crate) async fn activation_from_snapshot_and_tail<S: SnapshotStore + Clone + 'static>(
    store: S,
) {
    let erin = id("erin");
    let config = ActorConfig {
        snapshots: SnapshotPolicy::EveryEvents(4),
        ..ActorConfig::default()
    };
    let actors = spawn(&store, config.clone());
    let first_id = CommandId::generate();
    let first = actors
        .ask_with(
            &erin,
            Command::Deposit { cents: 1 },
            AskOptions::default().command_id(first_id.clone()),
        )
        .await
        .unwrap();
    for cents in 2..=10 {
        actors.ask(&erin, Command::Deposit { cents }).await.unwrap();
    }
    actors.shutdown().await;
    let stream = actors.stream_id(&erin).unwrap();
    let snapshot = store
        .latest_snapshot(&stream)
        .await
        .unwrap()
        .expect("a snapshot");
    assert_eq!(snapshot.version, 8, "after 4 and 8 events");
    assert!(actors.stats().snapshots >= 2);

    let restarted = spawn(&store, config);
    assert_eq!(balance(&restarted, &erin).await, 55);
    // Still exactly-once for a command covered by the snapshot only.
    let again = restarted
        .ask_with(
            &erin,
            Command::Deposit { cents: 1 },
            AskOptions::default().command_id(first_id),
        )
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!((again.reply, again.version), (first.reply, 1));
    match restarted.query(&erin, Query::State).await.unwrap() {
        Answer::State(account) => assert_eq!(account.operations, 10),
        other => panic!("{other:?}"),
    }
    restarted.shutdown().await;
}

/// Another writer stored an event: the actor's append conflicts, it reloads, answers a typed
/// conflict, writes nothing; the next command decides on the fresh state. With
/// `DecideAgain`, the command is decided again and succeeds.
pub(crate) async fn conflict_reloads<S: SnapshotStore + Clone + 'static>(store: S) {
    let fred = id("fred");
    let actors = spawn(&store, ActorConfig::default());
    actors
        .ask(&fred, Command::Deposit { cents: 10 })
        .await
        .unwrap();
    let stream = actors.stream_id(&fred).unwrap();
    let foreign = |version| {
        Event::builder(stream.clone(), "Deposited")
            .version(version)
            .data(&serde_json::json!({ "cents": 100 }))
            .unwrap()
            .build()
    };
    store.save_event(foreign(2)).await.unwrap();
    let err = actors
        .ask(&fred, Command::Withdraw { cents: 5 })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AskError::Failed(ActorError::Conflict {
                attempted_version: 2,
                current_version: 2,
                ..
            })
        ),
        "{err}"
    );
    assert_eq!(history(&actors, &fred).await.len(), 2, "nothing written");
    assert_eq!(balance(&actors, &fred).await, 110, "reloaded");
    let outcome = actors
        .ask(&fred, Command::Withdraw { cents: 5 })
        .await
        .unwrap();
    assert_eq!((outcome.version, outcome.reply), (3, 105));

    store.save_event(foreign(4)).await.unwrap();
    let options = AskOptions::default().on_conflict(OnConflict::DecideAgain { max_attempts: 1 });
    let outcome = actors
        .ask_with(&fred, Command::Withdraw { cents: 5 }, options)
        .await
        .unwrap();
    assert_eq!((outcome.version, outcome.reply), (5, 200));
    assert_eq!(actors.stats().conflicts, 2);
    actors.shutdown().await;
}

/// A stored event the actor cannot decode: activation fails with a typed error, nothing is
/// decided or written, other actors keep serving.
pub(crate) async fn undecodable_event_fails_activation<S: SnapshotStore + Clone + 'static>(
    store: S,
) {
    let gina = id("gina");
    let actors = spawn(&store, ActorConfig::default());
    let stream = actors.stream_id(&gina).unwrap();
    store
        .save_event(
            Event::builder(stream.clone(), "Deposited")
                .version(1)
                .data(&serde_json::json!({"cents": 3}))
                .unwrap()
                .build(),
        )
        .await
        .unwrap();
    store
        .save_event(Event::new(stream.clone(), "FromTheFuture", 2))
        .await
        .unwrap();
    let err = actors
        .ask(&gina, Command::Deposit { cents: 1 })
        .await
        .unwrap_err();
    match err {
        AskError::Failed(ActorError::Activation(e)) => {
            assert_eq!(e.actor_id, gina);
            assert!(
                matches!(
                    e.reason,
                    ActivationFailure::UndecodableEvent { version: 2, .. }
                ),
                "{e}"
            );
        }
        other => panic!("{other}"),
    }
    assert!(matches!(
        actors.query(&gina, Query::Balance).await,
        Err(ActorError::Activation(_))
    ));
    assert_eq!(
        store.latest_version(&stream).await.unwrap(),
        2,
        "nothing written"
    );
    actors
        .ask(&id("hank"), Command::Deposit { cents: 1 })
        .await
        .unwrap();
    assert!(actors.stats().activation_failures >= 2);
    actors.shutdown().await;
}

/// Two runtimes on one store (as an old and a new owner would be): a command applied by one
/// and retried on the other, whose view is stale, is recognised after the reload its append
/// causes (a version conflict, or a store-level duplicate of the same event ids at the same
/// versions) and answered with its stored outcome: not applied twice, not reported as a
/// conflict.
pub(crate) async fn retry_on_a_second_runtime_with_a_stale_view<
    S: SnapshotStore + Clone + 'static,
>(
    store: S,
) {
    let wes = id("wes");
    let first = spawn(&store, ActorConfig::default());
    let second = spawn(&store, ActorConfig::default());
    first
        .ask(&wes, Command::Deposit { cents: 10 })
        .await
        .unwrap();
    assert_eq!(
        balance(&second, &wes).await,
        10,
        "second is active at version 1"
    );
    let command_id = CommandId::generate();
    let options = AskOptions::default().command_id(command_id);
    let original = first
        .ask_with(&wes, Command::Withdraw { cents: 4 }, options.clone())
        .await
        .unwrap();
    let retried = second
        .ask_with(&wes, Command::Withdraw { cents: 4 }, options)
        .await
        .unwrap();
    assert!(retried.duplicate);
    assert_eq!(
        (retried.reply, retried.version),
        (original.reply, original.version)
    );
    assert_eq!(history(&second, &wes).await.len(), 2);
    assert_eq!(balance(&second, &wes).await, 6);
    first.shutdown().await;
    second.shutdown().await;
}
