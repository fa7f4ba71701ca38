//! Actors talking to actors, on every store: `effects.rs` runs these on the in-memory store,
//! `jetstream.rs` on JetStream.

use std::time::Duration;

use aether_actor::{ActorConfig, Actors, AskOptions, CommandId};
use aether_core::{ActorId, Event, Namespace, SnapshotStore};

use super::bank::{self, Bank};
use super::relay::{self, Relay, id};

pub(crate) type Relays<S> = Actors<Relay<Actors<Bank, S>>, S>;

/// A relay runtime and the bank runtime it talks to, on one store.
pub(crate) fn spawn<S: SnapshotStore + Clone + 'static>(
    store: &S,
    config: ActorConfig,
) -> (Relays<S>, Actors<Bank, S>) {
    let ns = Namespace::new("talk").unwrap();
    let bank = Actors::new(ns.clone(), Bank, store.clone(), ActorConfig::default()).unwrap();
    let relays = Actors::new(ns, Relay { bank: bank.clone() }, store.clone(), config).unwrap();
    (relays, bank)
}

pub(crate) async fn log<S: SnapshotStore + Clone + 'static>(
    relays: &Relays<S>,
    who: &str,
) -> Vec<String> {
    relays.query(&id(who), ()).await.unwrap()
}

/// The stored history of `who` in `actors`.
pub(crate) async fn history<A: aether_actor::Actor, S: SnapshotStore + 'static>(
    actors: &Actors<A, S>,
    who: &ActorId,
) -> Vec<Event> {
    let stream = actors.stream_id(who).unwrap();
    let replay = actors.store().events_with_errors(&stream, 0).await.unwrap();
    assert!(replay.errors.is_empty(), "{:?}", replay.errors);
    replay.events
}

/// Polls `done` every 10 ms. The bound is a liveness guard for a slow, shared machine, not an
/// expected duration: what is awaited must happen, and the test fails if it never does.
pub(crate) async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let guard = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < guard,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An ask made by an effect carries a command id derived from its cause, its reply comes back
/// as a follow-up command, a retried command runs no effect again, and re-sending the effect's
/// command is answered as a duplicate: the chain is exactly-once.
pub(crate) async fn ask_effect_chain_is_exactly_once<S: SnapshotStore + Clone + 'static>(store: S) {
    let (relays, bank) = spawn(&store, ActorConfig::default());
    let acc = id("acc");
    bank.ask(&acc, bank::Command::Deposit { cents: 100 })
        .await
        .unwrap();
    let cause = CommandId::generate();
    let options = AskOptions::default().command_id(cause.clone());
    let collect = relay::Command::Collect {
        from: "acc".into(),
        cents: 30,
    };
    let first = relays
        .ask_with(&id("r1"), collect.clone(), options.clone())
        .await
        .unwrap();
    assert!(!first.duplicate);
    // The outcome comes after the turn: the ask's reply is already noted.
    assert_eq!(log(&relays, "r1").await, ["sent to acc", "ok 70"]);
    let stored = history(&bank, &acc).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(
        stored[1].command_id.as_deref(),
        Some(cause.derived("e0").as_str())
    );
    let own = history(&relays, &id("r1")).await;
    assert_eq!(
        own.iter()
            .map(|e| e.command_id.clone().unwrap())
            .collect::<Vec<_>>(),
        [cause.to_string(), cause.derived("e0.r").to_string()]
    );

    // A retry of the cause answers its outcome and runs no effect again.
    let (effects, bank_commands) = (relays.stats().effects, bank.stats().commands);
    let retry = relays.ask_with(&id("r1"), collect, options).await.unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.reply, first.reply);
    assert_eq!(
        relays.stats().effects,
        effects,
        "no effect ran for the duplicate"
    );
    assert_eq!(
        bank.stats().commands,
        bank_commands,
        "nothing reached the bank"
    );
    // Re-sending the effect's own command (as a re-run effect would) is a duplicate too.
    let resent = bank
        .ask_with(
            &acc,
            bank::Command::Withdraw { cents: 30 },
            AskOptions::default().command_id(cause.derived("e0")),
        )
        .await
        .unwrap();
    assert!(resent.duplicate);
    assert_eq!(history(&bank, &acc).await.len(), 2, "withdrawn once");
    assert_eq!(log(&relays, "r1").await, ["sent to acc", "ok 70"]);
    assert_eq!(relays.stats().effect_failures, 0);
    relays.shutdown().await;
    bank.shutdown().await;
}

/// A asks B, whose effect asks A: refused at once with `Reentrant` (A is waiting in the call
/// chain), never a deadlock; A's ask of B completes.
pub(crate) async fn ask_cycle_is_refused<S: SnapshotStore + Clone + 'static>(store: S) {
    let (relays, bank) = spawn(&store, ActorConfig::default());
    relays
        .ask(
            &id("a"),
            relay::Command::Cycle {
                path: vec!["b".into(), "a".into()],
            },
        )
        .await
        .unwrap();
    assert_eq!(log(&relays, "b").await, ["sent to a", "reentrant"]);
    assert_eq!(log(&relays, "a").await, ["sent to b", "ok 1"]);
    assert_eq!(
        relays.stats().effect_failures,
        1,
        "the refused ask is counted"
    );
    relays.shutdown().await;
    bank.shutdown().await;
}

/// A reminder set before a passivation fires while the actor is passivated: the runtime's
/// scheduler activates it.
pub(crate) async fn reminder_wakes_a_passivated_actor<S: SnapshotStore + Clone + 'static>(
    store: S,
) {
    let (relays, bank) = spawn(&store, ActorConfig::default());
    let r = id("sleeper");
    relays
        .ask(
            &r,
            relay::Command::Remind {
                name: "wake".into(),
                ms: 200,
            },
        )
        .await
        .unwrap();
    assert!(relays.passivate(&r).await);
    assert_eq!(relays.mailbox_depth(&r), None);
    eventually("the reminder fired", || async {
        relays.stats().reminders_fired == 1 && relays.stats().commands == 2
    })
    .await;
    assert_eq!(relays.stats().activations, 2, "woken by the scheduler");
    assert_eq!(
        log(&relays, "sleeper").await,
        ["reminder wake", "reminded wake"]
    );
    relays.shutdown().await;
    bank.shutdown().await;
}
