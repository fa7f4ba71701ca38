//! Actors talking to actors on the in-memory store: effects run after the events are stored,
//! exactly-once chains, reentrancy, plain timers versus persisted reminders, effect failures.

#[allow(dead_code)]
#[path = "support/bank.rs"]
mod bank;
#[allow(dead_code)]
#[path = "support/gated.rs"]
mod gated;
#[allow(dead_code)]
#[path = "support/relay.rs"]
mod relay;
#[allow(dead_code)]
#[path = "support/talk.rs"]
mod talk;

use std::collections::HashMap;
use std::time::Duration;

use aether_actor::{ActorConfig, ActorError, AskError, AskOptions, SnapshotPolicy};
use aether_core::{InMemoryEventStore, SnapshotStore};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

use gated::GatedStore;
use relay::{Command, id};
use talk::{eventually, history, log, spawn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_effect_chain_is_exactly_once() {
    talk::ask_effect_chain_is_exactly_once(InMemoryEventStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_cycle_is_refused() {
    talk::ask_cycle_is_refused(InMemoryEventStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminder_wakes_a_passivated_actor() {
    talk::reminder_wakes_a_passivated_actor(InMemoryEventStore::new()).await;
}

/// Asking oneself, and a longer cycle (a → b → c → a), are refused with `Reentrant`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_asks_and_longer_cycles_are_refused() {
    let (relays, _bank) = spawn(&InMemoryEventStore::new(), ActorConfig::default());
    relays
        .ask(
            &id("solo"),
            Command::Cycle {
                path: vec!["solo".into()],
            },
        )
        .await
        .unwrap();
    assert_eq!(log(&relays, "solo").await, ["sent to solo", "reentrant"]);

    let path = ["b", "c", "a"].map(String::from).to_vec();
    relays.ask(&id("a"), Command::Cycle { path }).await.unwrap();
    assert_eq!(log(&relays, "c").await, ["sent to a", "reentrant"]);
    assert_eq!(log(&relays, "b").await, ["sent to c", "ok 1"]);
    assert_eq!(log(&relays, "a").await, ["sent to b", "ok 1"]);
    assert_eq!(relays.stats().effect_failures, 2);
}

/// Two actors each running an effect that asks the other (both busy at once: a cross wait no
/// chain can see) end with the asks' timeout, never a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_wait_ends_in_a_timeout() {
    let store = GatedStore::closed();
    let config = ActorConfig {
        ask: AskOptions::default().timeout(Duration::from_millis(500)),
        ..ActorConfig::default()
    };
    let (relays, _bank) = spawn(&store, config);
    let long = AskOptions::default().timeout(Duration::from_secs(60));
    let ask = |me: &'static str, other: &'static str| {
        let relays = relays.clone();
        let long = long.clone();
        tokio::spawn(async move {
            let path = vec![other.to_owned()];
            relays
                .ask_with(&id(me), Command::Cycle { path }, long)
                .await
                .unwrap()
        })
    };
    let (a, b) = (ask("a", "b"), ask("b", "a"));
    // Both decided and wait at the store: their effects will run at the same time.
    store.until_waiting(2).await;
    store.open();
    a.await.unwrap();
    b.await.unwrap();
    let (la, lb) = (log(&relays, "a").await, log(&relays, "b").await);
    let ends = [la[1].as_str(), lb[1].as_str()];
    assert!(ends.contains(&"timeout"), "{la:?} {lb:?}");
    for end in ends {
        assert!(end == "timeout" || end.starts_with("ok"), "{la:?} {lb:?}");
    }
}

/// Effects run only after the events that caused them are stored: a decision whose events the
/// store refuses runs none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_effect_runs_when_the_events_are_not_stored() {
    let (relays, bank) = spawn(&InMemoryEventStore::new(), ActorConfig::default());
    let err = relays
        .ask(
            &id("r"),
            Command::PayThenFail {
                to: "acc".into(),
                cents: 5,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, AskError::Failed(ActorError::InvalidEvents { .. })),
        "{err}"
    );
    assert_eq!(relays.stats().effects, 0);
    assert_eq!(bank.stats().commands, 0, "the tell never left");
    assert!(history(&bank, &id("acc")).await.is_empty());
}

/// A failed effect (here a tell to an invalid id) is counted and logged; the actor keeps its
/// stored events and keeps serving. A rejection answered to an ask is not a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effect_failures_are_counted_and_do_not_stop_the_actor() {
    let (relays, bank) = spawn(&InMemoryEventStore::new(), ActorConfig::default());
    let r = id("r");
    relays
        .ask(
            &r,
            Command::Pay {
                to: "long".into(),
                cents: 5,
            },
        )
        .await
        .unwrap();
    assert_eq!(relays.stats().effect_failures, 1);
    assert_eq!(bank.stats().tell_failures, 1);
    relays
        .ask(
            &r,
            Command::Collect {
                from: "empty".into(),
                cents: 5,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        relays.stats().effect_failures,
        1,
        "a rejection is an answer"
    );
    assert_eq!(
        log(&relays, "r").await,
        ["sent to long", "sent to empty", "rejected"]
    );
    relays
        .ask(
            &r,
            Command::Pay {
                to: "acc".into(),
                cents: 5,
            },
        )
        .await
        .unwrap();
    eventually("the tell was applied", || async {
        history(&bank, &id("acc")).await.len() == 1
    })
    .await;
    // The bank decided two commands: the refused withdrawal and this deposit.
    assert_eq!(bank.stats().commands, 2);
}

/// A tell to a peer reaches it with a derived id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tell_to_a_peer() {
    let (relays, _bank) = spawn(&InMemoryEventStore::new(), ActorConfig::default());
    let outcome = relays
        .ask(
            &id("p"),
            Command::Forward {
                to: "q".into(),
                text: "hello".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(log(&relays, "q").await, ["hello"]);
    let stored = history(&relays, &id("q")).await;
    assert_eq!(
        stored[0].command_id.as_deref(),
        Some(outcome.command_id.derived("e0").as_str())
    );
}

/// Invalid timer or reminder effects fail the command with a typed error; nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_effects_write_nothing() {
    let (relays, _bank) = spawn(&InMemoryEventStore::new(), ActorConfig::default());
    for command in [Command::RemindWithoutEvents, Command::RemindBadName] {
        let err = relays.ask(&id("r"), command).await.unwrap_err();
        assert!(
            matches!(err, AskError::Failed(ActorError::InvalidEffect { .. })),
            "{err}"
        );
    }
    assert!(history(&relays, &id("r")).await.is_empty());
    assert_eq!(relays.stats().effects, 0);
}

/// A plain timer fires in its activation; a timer of an actor passivated before it was due
/// never fires (nor activates the actor); a cancelled timer never fires.
// Paused tokio time: timers fire in due order, however slow the machine.
#[tokio::test(start_paused = true)]
async fn plain_timers_die_with_their_activation() {
    let (relays, _bank) = spawn(&InMemoryEventStore::new(), ActorConfig::default());
    let timer = |text: &str| Command::Timer {
        name: "t".into(),
        ms: 200,
        text: text.into(),
    };
    // Passivated and cancelled timers are set first: due before the one that fires.
    relays.ask(&id("gone"), timer("gone fired")).await.unwrap();
    assert!(relays.passivate(&id("gone")).await);
    relays
        .ask(&id("cancelled"), timer("cancelled fired"))
        .await
        .unwrap();
    relays
        .ask(&id("cancelled"), Command::CancelTimer { name: "t".into() })
        .await
        .unwrap();
    relays.ask(&id("kept"), timer("kept fired")).await.unwrap();
    eventually("the kept timer fired", || async {
        log(&relays, "kept").await.len() == 2
    })
    .await;
    assert_eq!(log(&relays, "kept").await, ["timer t", "kept fired"]);
    let activations = relays.stats().activations;
    assert_eq!(relays.mailbox_depth(&id("gone")), None, "not woken");
    assert_eq!(log(&relays, "gone").await, ["timer t"]);
    assert_eq!(log(&relays, "cancelled").await, ["timer t"]);
    assert_eq!(relays.stats().timers_fired, 1);
    assert_eq!(
        relays.stats().activations,
        activations + 1,
        "only the query woke it"
    );
}

/// A replaced timer (same name) fires once, with the new command.
// Paused tokio time: timers fire in due order, however slow the machine.
#[tokio::test(start_paused = true)]
async fn a_replaced_timer_fires_once() {
    let (relays, _bank) = spawn(&InMemoryEventStore::new(), ActorConfig::default());
    let timer = |ms, text: &str| Command::Timer {
        name: "t".into(),
        ms,
        text: text.into(),
    };
    relays.ask(&id("r"), timer(100, "first")).await.unwrap();
    relays.ask(&id("r"), timer(300, "second")).await.unwrap();
    relays.ask(&id("other"), timer(400, "later")).await.unwrap();
    eventually("the later timer fired", || async {
        log(&relays, "other").await.len() == 2
    })
    .await;
    assert_eq!(log(&relays, "r").await, ["timer t", "timer t", "second"]);
    assert_eq!(relays.stats().timers_fired, 2);
}

/// Reminders are persisted (here in a snapshot): after a restart, the actor's activation
/// reloads its reminder and the scheduler fires it; a fired reminder is removed with its
/// command's events and does not fire again; a cancelled one is gone from what is persisted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_survive_a_restart_and_fire_once() {
    let store = InMemoryEventStore::new();
    let config = ActorConfig {
        snapshots: SnapshotPolicy::EveryEvents(1),
        ..ActorConfig::default()
    };
    let (relays, bank) = spawn(&store, config.clone());
    let r = id("r");
    let remind = |name: &str, ms| Command::Remind {
        name: name.into(),
        ms,
    };
    // Due long after the test: its cancellation is checked in what is persisted.
    relays.ask(&r, remind("dropped", 3_600_000)).await.unwrap();
    relays
        .ask(
            &r,
            Command::CancelReminder {
                name: "dropped".into(),
            },
        )
        .await
        .unwrap();
    relays.ask(&r, remind("wake", 200)).await.unwrap();
    relays.shutdown().await;
    bank.shutdown().await;
    assert_eq!(
        relays.stats().snapshots,
        3,
        "one per command, the last before the stop"
    );
    let stream = relays.stream_id(&r).unwrap();
    let snapshot = store.latest_snapshot(&stream).await.unwrap().unwrap();
    let persisted: Vec<&String> = snapshot.state["reminders"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(persisted, ["wake"], "the cancelled reminder is gone");

    let (relays, bank) = spawn(&store, config.clone());
    // Activated from the snapshot (no tail), which holds the reminder.
    assert_eq!(log(&relays, "r").await.len(), 3);
    eventually("the reminder fired after the restart", || async {
        log(&relays, "r").await.len() == 4
    })
    .await;
    assert_eq!(log(&relays, "r").await[3], "reminded wake");
    assert_eq!(relays.stats().reminders_fired, 1);
    relays.shutdown().await;
    bank.shutdown().await;

    // Once more: the fired reminder is gone; a later one fires, the fired one does not again.
    let (relays, _bank) = spawn(&store, config);
    relays.ask(&r, remind("later", 100)).await.unwrap();
    eventually("the later reminder fired", || async {
        log(&relays, "r").await.len() == 6
    })
    .await;
    assert_eq!(log(&relays, "r").await[5], "reminded later");
    assert_eq!(relays.stats().reminders_fired, 1, "wake never again");
}

/// A reminder whose command keeps failing (the store refuses appends) is tried again about
/// once a second, never in a loop, and fires once the store recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_reminder_is_retried_with_a_pause() {
    let store = GatedStore::closed();
    store.open();
    let (relays, _bank) = spawn(&store, ActorConfig::default());
    let r = id("r");
    relays
        .ask(
            &r,
            Command::Remind {
                name: "w".into(),
                ms: 100,
            },
        )
        .await
        .unwrap();
    store.set_failing(true);
    let started = std::time::Instant::now();
    eventually("the reminder was tried", || async {
        relays.stats().reminders_fired >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let tries = relays.stats().reminders_fired;
    // At most one try per second since the reminder was set (a slow machine only tries less).
    let bound = started.elapsed().as_secs() + 2;
    assert!(tries <= bound, "{tries} tries in {:?}", started.elapsed());
    assert!(relays.stats().effect_failures >= 1);
    store.set_failing(false);
    eventually("the reminder fired once the store recovered", || async {
        log(&relays, "r").await.len() == 2
    })
    .await;
    assert_eq!(log(&relays, "r").await, ["reminder w", "reminded w"]);
}

/// Effect failures reach the `metrics` recorder (labelled with the actor type).
#[test]
fn effect_failures_are_exported_through_the_metrics_crate() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (relays, bank) = metrics::with_local_recorder(&recorder, || {
        spawn(&InMemoryEventStore::new(), ActorConfig::default())
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // A tell to an id too long for the bank: the effect fails, the command stands.
        let pay = Command::Pay {
            to: "long".into(),
            cents: 1,
        };
        relays.ask(&id("r"), pay).await.unwrap();
        relays.shutdown().await;
        bank.shutdown().await;
    });
    let counters: HashMap<(String, String), u64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| {
            let actor_type = key
                .key()
                .labels()
                .find(|l| l.key() == "actor_type")?
                .value()
                .to_owned();
            match value {
                DebugValue::Counter(n) => Some(((key.key().name().to_owned(), actor_type), n)),
                _ => None,
            }
        })
        .collect();
    let get = |name: &str, ty: &str| counters[&(name.to_owned(), ty.to_owned())];
    assert_eq!(get("aether_actor_effects_total", "relay"), 1);
    assert_eq!(get("aether_actor_effect_failures_total", "relay"), 1);
    assert_eq!(get("aether_actor_tell_failures_total", "account"), 1);
    assert_eq!(get("aether_actor_timers_fired_total", "relay"), 0);
    assert_eq!(get("aether_actor_reminders_fired_total", "relay"), 0);
}
