//! The actor runtime on the in-memory store: the scenarios every store runs, and what only a
//! local, controllable store can show (overload, timeouts, activation races, passivation,
//! shutdown, corrupt records).

#[allow(dead_code)]
#[path = "support/bank.rs"]
mod bank;
#[allow(dead_code)]
#[path = "support/gated.rs"]
mod gated;
#[allow(dead_code)]
#[path = "support/scenarios.rs"]
mod scenarios;

use std::time::Duration;

use aether_actor::{
    ActivationFailure, ActorConfig, ActorError, AskError, AskOptions, CommandId, WhenFull,
};
use aether_core::{EventStore, InMemoryEventStore};

use bank::{Answer, Command, Query};
use gated::GatedStore;
use scenarios::{balance, history, id, spawn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_command_after_lost_reply() {
    scenarios::retried_command_after_lost_reply(InMemoryEventStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_ask_one_actor() {
    scenarios::many_tasks_ask_one_actor(InMemoryEventStore::new(), 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_alone() {
    scenarios::bad_input_fails_alone(InMemoryEventStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_from_snapshot_and_tail() {
    scenarios::activation_from_snapshot_and_tail(InMemoryEventStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_reloads() {
    scenarios::conflict_reloads(InMemoryEventStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_event_fails_activation() {
    scenarios::undecodable_event_fails_activation(InMemoryEventStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_a_second_runtime_with_a_stale_view() {
    scenarios::retry_on_a_second_runtime_with_a_stale_view(InMemoryEventStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_record_fails_activation_without_partial_state() {
    let store = InMemoryEventStore::new();
    let actors = spawn(&store, ActorConfig::default());
    let ivy = id("ivy");
    actors
        .ask(&ivy, Command::Deposit { cents: 5 })
        .await
        .unwrap();
    assert!(actors.passivate(&ivy).await);
    let stream = actors.stream_id(&ivy).unwrap();
    store
        .write_raw_record(&stream, b"not an event".to_vec())
        .unwrap();
    let err = actors.query(&ivy, Query::Balance).await.unwrap_err();
    match err {
        ActorError::Activation(e) => assert!(
            matches!(
                e.reason,
                ActivationFailure::UndecodableRecord { position: 2, .. }
            ),
            "{e}"
        ),
        other => panic!("{other}"),
    }
    let err = actors
        .ask(&ivy, Command::Deposit { cents: 1 })
        .await
        .unwrap_err();
    assert!(
        matches!(err, AskError::Failed(ActorError::Activation(_))),
        "{err}"
    );
    assert_eq!(store.latest_version(&stream).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_messages_activate_once() {
    let store = InMemoryEventStore::new();
    let actors = spawn(&store, ActorConfig::default());
    let jo = id("jo");
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let actors = actors.clone();
        let jo = jo.clone();
        tasks.push(tokio::spawn(async move {
            let options = AskOptions::default().when_full(WhenFull::Wait);
            actors
                .ask_with(&jo, Command::Deposit { cents: 1 }, options)
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stats = actors.stats();
    assert_eq!((stats.activations, stats.active), (1, 1), "{stats:?}");
    assert_eq!(balance(&actors, &jo).await, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mailbox_is_overloaded_or_waits_then_times_out() {
    let store = GatedStore::closed();
    let actors = spawn(
        &store,
        ActorConfig {
            mailbox_capacity: 2,
            ..ActorConfig::default()
        },
    );
    let kim = id("kim");
    // The first command blocks in the store; two more fill the mailbox.
    let mut pending = Vec::new();
    for cents in 1..=3 {
        let actors = actors.clone();
        let kim = kim.clone();
        pending.push(tokio::spawn(async move {
            actors.ask(&kim, Command::Deposit { cents }).await
        }));
        if cents == 1 {
            store.until_waiting(1).await;
        }
    }
    // Once both queued commands are in the mailbox, a fourth fails at once.
    while actors.mailbox_depth(&kim) != Some(2) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let err = actors
        .ask(&kim, Command::Deposit { cents: 100 })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AskError::Failed(ActorError::Overloaded { capacity: 2, .. })
        ),
        "{err}"
    );
    let options = AskOptions::default()
        .when_full(WhenFull::Wait)
        .timeout(Duration::from_millis(50));
    let err = actors
        .ask_with(&kim, Command::Deposit { cents: 100 }, options)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AskError::Failed(ActorError::Overloaded { .. })),
        "{err}"
    );
    // tell never waits: a full mailbox is a counted loss.
    assert!(matches!(
        actors.tell(&kim, Command::Deposit { cents: 100 }).await,
        Err(ActorError::Overloaded { .. })
    ));
    assert_eq!(actors.stats().tell_failures, 1);
    store.open();
    for task in pending {
        task.await.unwrap().unwrap();
    }
    assert_eq!(
        balance(&actors, &kim).await,
        6,
        "none of the refused commands ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_ask_retried_with_its_id_answers_the_stored_outcome() {
    let store = GatedStore::closed();
    let actors = spawn(&store, ActorConfig::default());
    let lee = id("lee");
    let command_id = CommandId::generate();
    let options = AskOptions::default()
        .command_id(command_id.clone())
        .timeout(Duration::from_millis(20));
    let err = actors
        .ask_with(&lee, Command::Deposit { cents: 7 }, options.clone())
        .await
        .unwrap_err();
    match &err {
        AskError::Failed(
            e @ ActorError::Timeout {
                command_id: Some(c),
                ..
            },
        ) => {
            assert_eq!(c, &command_id);
            assert!(e.outcome_unknown());
        }
        other => panic!("{other}"),
    }
    store.open();
    let retry = actors
        .ask_with(
            &lee,
            Command::Deposit { cents: 7 },
            options.timeout(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    assert!(
        retry.duplicate,
        "the first attempt landed after the caller gave up"
    );
    assert_eq!((retry.reply, retry.version), (7, 1));
    assert_eq!(history(&actors, &lee).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tell_applies_and_counts_failures_later_in_the_actor() {
    let store = InMemoryEventStore::new();
    let actors = spawn(&store, ActorConfig::default());
    let max = id("max");
    actors
        .tell(&max, Command::Deposit { cents: 3 })
        .await
        .unwrap();
    actors
        .tell(&max, Command::Withdraw { cents: 10 })
        .await
        .unwrap();
    // A query queues behind the tells: it answers after both were handled.
    assert_eq!(balance(&actors, &max).await, 3);
    let stats = actors.stats();
    assert_eq!((stats.tell_failures, stats.rejections), (1, 1), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_actors_passivate_and_reactivate_by_replay() {
    let store = InMemoryEventStore::new();
    let idle = Duration::from_millis(50);
    let actors = spawn(
        &store,
        ActorConfig {
            idle_timeout: Some(idle),
            ..ActorConfig::default()
        },
    );
    let ned = id("ned");
    actors
        .ask(&ned, Command::Deposit { cents: 4 })
        .await
        .unwrap();
    // Passivation happens after the idle timeout; give it ample slack on a loaded machine.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while actors.stats().passivations == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never passivated");
        tokio::time::sleep(idle).await;
    }
    assert_eq!(actors.stats().active, 0);
    assert_eq!(balance(&actors, &ned).await, 4);
    assert_eq!(actors.stats().activations, 2);
}

/// The idle bounds, on tokio's paused clock (exact, however loaded the machine): an actor that
/// gets a message more often than its idle timeout is never passivated; once its messages
/// stop, it is passivated between 1 and 1.5 idle timeouts after the last one (both included).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn idle_passivation_happens_between_one_and_one_and_a_half_idle_timeouts() {
    // Message spacings that fall on the sweeps' ticks and between them.
    for (idle_ms, spacing) in [(1_000, 0.4), (1_000, 0.37), (3_000, 0.29), (700, 0.45)] {
        let idle = Duration::from_millis(idle_ms);
        let store = InMemoryEventStore::new();
        let actors = spawn(
            &store,
            ActorConfig {
                idle_timeout: Some(idle),
                ..ActorConfig::default()
            },
        );
        let ola = id("ola");
        actors
            .ask(&ola, Command::Deposit { cents: 1 })
            .await
            .unwrap();
        // Busy for several idle timeouts: a message every `spacing` idle timeouts.
        for _ in 0..20 {
            tokio::time::sleep(idle.mul_f64(spacing)).await;
            assert_eq!(balance(&actors, &ola).await, 1);
            assert_eq!(
                actors.stats().passivations,
                0,
                "passivated while busy ({idle:?})"
            );
        }
        let last = tokio::time::Instant::now();
        let poll = Duration::from_millis(1);
        while actors.stats().passivations == 0 {
            tokio::time::sleep(poll).await;
            assert!(last.elapsed() < idle * 3, "never passivated ({idle:?})");
        }
        let after = last.elapsed();
        // At most 1.5 idle timeouts (a sweep may fall at the very instant of the last
        // message and miss it), seen within one poll.
        assert!(
            after >= idle && after <= idle * 3 / 2 + poll,
            "passivated {after:?} after the last message, idle timeout {idle:?}"
        );
        assert_eq!(actors.stats().activations, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_limit_passivates_the_least_recently_used() {
    let store = InMemoryEventStore::new();
    let actors = spawn(
        &store,
        ActorConfig {
            max_active: 2,
            idle_timeout: None,
            ..ActorConfig::default()
        },
    );
    let (a, b, c) = (id("a"), id("b"), id("c"));
    actors.ask(&a, Command::Deposit { cents: 1 }).await.unwrap();
    actors.ask(&b, Command::Deposit { cents: 2 }).await.unwrap();
    actors.ask(&a, Command::Deposit { cents: 1 }).await.unwrap(); // b is now the LRU
    actors.ask(&c, Command::Deposit { cents: 3 }).await.unwrap();
    // b stops (after draining); a and c stay.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while actors.stats().passivations == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never passivated");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(actors.stats().active, 2);
    assert!(!actors.passivate(&b).await, "b was the one passivated");
    assert_eq!(balance(&actors, &b).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_mailboxes_then_refuses() {
    let store = InMemoryEventStore::new();
    let actors = spawn(&store, ActorConfig::default());
    let ids: Vec<_> = (0..10).map(|i| id(&format!("s{i}"))).collect();
    for who in &ids {
        for _ in 0..5 {
            actors
                .tell(who, Command::Deposit { cents: 1 })
                .await
                .unwrap();
        }
    }
    actors.shutdown().await;
    assert_eq!(actors.stats().active, 0);
    for who in &ids {
        assert_eq!(
            history(&actors, who).await.len(),
            5,
            "every queued tell ran"
        );
    }
    let err = actors.ask(&ids[0], Command::Check).await.unwrap_err();
    assert!(matches!(err, AskError::Failed(ActorError::ShuttingDown)));
    assert!(matches!(
        actors.query(&ids[0], Query::State).await,
        Err(ActorError::ShuttingDown)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_stores_its_events_in_one_append_with_the_command_id() {
    let store = InMemoryEventStore::new();
    let actors = spawn(&store, ActorConfig::default());
    let oli = id("oli");
    actors
        .ask(&oli, Command::Deposit { cents: 1 })
        .await
        .unwrap();
    let command_id = CommandId::new("split-1").unwrap();
    let outcome = actors
        .ask_with(
            &oli,
            Command::Split {
                cents: 10,
                parts: 3,
            },
            AskOptions::default().command_id(command_id),
        )
        .await
        .unwrap();
    let written = outcome.written.unwrap();
    assert_eq!((written.first, written.last, outcome.reply), (2, 4, 11));
    let stored = history(&actors, &oli).await;
    assert_eq!(stored.len(), 4);
    for (i, event) in stored[1..].iter().enumerate() {
        assert_eq!(event.command_id.as_deref(), Some("split-1"));
        assert_eq!(event.id.as_str(), format!("split-1.{i}"));
        assert_eq!(event.actor_id.as_str(), "account.oli");
    }
    // A decision with no events writes nothing, and is still answered.
    let check = actors.ask(&oli, Command::Check).await.unwrap();
    assert_eq!((check.written, check.version, check.reply), (None, 4, 11));
    match actors.query(&oli, Query::State).await.unwrap() {
        Answer::State(account) => assert_eq!(account.operations, 4),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_index_forgets_beyond_its_horizon() {
    let store = InMemoryEventStore::new();
    let actors = spawn(
        &store,
        ActorConfig {
            command_horizon: 2,
            ..ActorConfig::default()
        },
    );
    let pat = id("pat");
    let first = CommandId::generate();
    let options = AskOptions::default().command_id(first);
    actors
        .ask_with(&pat, Command::Deposit { cents: 1 }, options.clone())
        .await
        .unwrap();
    actors
        .ask(&pat, Command::Deposit { cents: 1 })
        .await
        .unwrap();
    let within = actors
        .ask_with(&pat, Command::Deposit { cents: 1 }, options.clone())
        .await
        .unwrap();
    assert!(within.duplicate);
    actors
        .ask(&pat, Command::Deposit { cents: 1 })
        .await
        .unwrap();
    actors
        .ask(&pat, Command::Deposit { cents: 1 })
        .await
        .unwrap();
    // Beyond the horizon the command is decided again; its derived event ids are already
    // taken, so the in-memory store refuses the write instead of storing it twice.
    let beyond = actors
        .ask_with(&pat, Command::Deposit { cents: 1 }, options)
        .await;
    assert!(beyond.is_err(), "{beyond:?}");
    assert_eq!(history(&actors, &pat).await.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_event_types_are_upcast_on_replay() {
    let store = InMemoryEventStore::new();
    let actors = spawn(&store, ActorConfig::default());
    let quinn = id("quinn");
    let stream = actors.stream_id(&quinn).unwrap();
    let old = aether_core::Event::builder(stream.clone(), "MoneyAdded")
        .version(1)
        .data(&serde_json::json!({ "value": 9 }))
        .unwrap()
        .build();
    store.save_event(old).await.unwrap();
    assert_eq!(balance(&actors, &quinn).await, 9);
    let outcome = actors
        .ask(&quinn, Command::Deposit { cents: 1 })
        .await
        .unwrap();
    assert_eq!((outcome.version, outcome.reply), (2, 10));
    // An old event the hook refuses fails activation with the hook's reason.
    let broken = id("broken");
    let stream = actors.stream_id(&broken).unwrap();
    store
        .save_event(aether_core::Event::new(stream, "MoneyAdded", 1))
        .await
        .unwrap();
    match actors.query(&broken, Query::Balance).await.unwrap_err() {
        ActorError::Activation(e) => assert!(
            matches!(
                e.reason,
                ActivationFailure::UndecodableEvent {
                    source: aether_actor::CodecError::Upcast { .. },
                    ..
                }
            ),
            "{e}"
        ),
        other => panic!("{other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_cannot_be_encoded_fail_that_command_alone() {
    let store = InMemoryEventStore::new();
    let actors = spawn(&store, ActorConfig::default());
    let rob = id("rob");
    actors
        .ask(&rob, Command::Deposit { cents: 2 })
        .await
        .unwrap();
    let err = actors.ask(&rob, Command::Bare).await.unwrap_err();
    assert!(
        matches!(
            err,
            AskError::Failed(ActorError::EventEncode {
                source: aether_actor::CodecError::NotAnObject { .. },
                ..
            })
        ),
        "{err}"
    );
    let err = actors.ask(&rob, Command::PanicEncode).await.unwrap_err();
    assert!(
        matches!(&err, AskError::Failed(ActorError::EventEncode { source, .. }) if source.to_string().contains("panicked")),
        "{err}"
    );
    assert_eq!(history(&actors, &rob).await.len(), 1, "nothing written");
    let outcome = actors
        .ask(&rob, Command::Deposit { cents: 1 })
        .await
        .unwrap();
    assert_eq!((outcome.version, outcome.reply), (2, 3));
}

/// Passivations racing with messages (an idle timeout of 1 ms and an active limit of 1, with
/// several callers on two actors): no message is lost or applied twice, and two activations
/// of one actor never overlap (an overlap would show as a version conflict).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passivation_racing_with_messages_loses_nothing() {
    let store = InMemoryEventStore::new();
    let actors = spawn(
        &store,
        ActorConfig {
            idle_timeout: Some(Duration::from_millis(1)),
            max_active: 1,
            ..ActorConfig::default()
        },
    );
    let who = [id("r1"), id("r2")];
    let mut tasks = Vec::new();
    for caller in 0..8u64 {
        let actors = actors.clone();
        let who = who.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25u64 {
                let target = &who[((caller + i) % 2) as usize];
                let options = AskOptions::default().when_full(WhenFull::Wait);
                actors
                    .ask_with(target, Command::Deposit { cents: 1 }, options)
                    .await
                    .unwrap();
                if i % 5 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stats = actors.stats();
    assert_eq!(stats.conflicts, 0, "{stats:?}");
    assert!(stats.passivations > 0 && stats.activations > 2, "{stats:?}");
    for target in &who {
        let stored = history(&actors, target).await;
        assert_eq!(stored.len(), 100);
        assert_eq!(balance(&actors, target).await, 100);
    }
    actors.shutdown().await;
    assert_eq!(actors.stats().active, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_timeout_means_no_timeout_not_a_panic() {
    let store = InMemoryEventStore::new();
    let actors = spawn(&store, ActorConfig::default());
    let options = AskOptions::default().timeout(Duration::MAX);
    let outcome = actors
        .ask_with(&id("tia"), Command::Deposit { cents: 1 }, options)
        .await
        .unwrap();
    assert_eq!(outcome.version, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_behind_a_busy_actor_times_out_with_its_own_timeout() {
    let store = GatedStore::closed();
    let actors = spawn(&store, ActorConfig::default());
    let uma = id("uma");
    let busy = tokio::spawn({
        let actors = actors.clone();
        let uma = uma.clone();
        async move { actors.ask(&uma, Command::Deposit { cents: 2 }).await }
    });
    store.until_waiting(1).await;
    let options = aether_actor::QueryOptions::default().timeout(Duration::from_millis(20));
    let err = actors
        .query_with(&uma, Query::Balance, options)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ActorError::Timeout {
                command_id: None,
                ..
            }
        ),
        "{err}"
    );
    store.open();
    busy.await.unwrap().unwrap();
    assert_eq!(balance(&actors, &uma).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_active_limit_passivates_the_oldest_sixteenth_at_once() {
    let store = InMemoryEventStore::new();
    let actors = spawn(
        &store,
        ActorConfig {
            max_active: 32,
            idle_timeout: None,
            ..ActorConfig::default()
        },
    );
    let ids: Vec<_> = (0..33).map(|i| id(&format!("lru{i}"))).collect();
    for who in &ids {
        actors.query(who, Query::Balance).await.unwrap();
    }
    // The 33rd activation asked the two least recently used (32 / 16) to passivate.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    // (`active` drops when a stopped actor's slot is gone.)
    while actors.stats().active > 31 {
        assert!(tokio::time::Instant::now() < deadline, "never passivated");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(actors.stats().passivations, 2);
    assert!(!actors.passivate(&ids[0]).await && !actors.passivate(&ids[1]).await);
    // Room for one more without another eviction.
    actors.query(&id("extra"), Query::Balance).await.unwrap();
    actors.query(&ids[32], Query::Balance).await.unwrap();
    assert_eq!(actors.stats().passivations, 2);
    assert_eq!(actors.stats().active, 32);
}

/// The store stored the events but the ack was lost: the caller gets an error whose outcome is
/// unknown; the actor reloads before its next message; the retry with the same command id is
/// answered with the stored outcome, applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_ack_then_a_retry_applies_once() {
    let store = GatedStore::losing_next_ack();
    let actors = spawn(&store, ActorConfig::default());
    let xia = id("xia");
    let command_id = CommandId::generate();
    let options = AskOptions::default().command_id(command_id);
    let err = actors
        .ask_with(&xia, Command::Deposit { cents: 8 }, options.clone())
        .await
        .unwrap_err();
    match &err {
        AskError::Failed(e @ ActorError::Store { .. }) => assert!(e.outcome_unknown()),
        other => panic!("{other}"),
    }
    // Another command in between: decided on the reloaded state (version 1), not on the
    // stale one (version 0), so it does not conflict.
    let other = actors
        .ask(&xia, Command::Deposit { cents: 1 })
        .await
        .unwrap();
    assert_eq!((other.version, other.reply), (2, 9));
    let retry = actors
        .ask_with(&xia, Command::Deposit { cents: 8 }, options)
        .await
        .unwrap();
    assert!(retry.duplicate);
    assert_eq!((retry.version, retry.reply), (1, 8));
    assert_eq!(history(&actors, &xia).await.len(), 2);
    assert_eq!(actors.stats().conflicts, 0);
}

/// A snapshot whose command index is in the object form (written before the compact array
/// form) still loads: the state, and exactly-once for the commands it alone remembers (a
/// split command included). The next snapshot is written in the compact form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_with_the_object_form_command_index_still_loads() {
    use aether_core::{ActorSnapshot, SnapshotStore};
    use serde_json::{Value, json};

    let store = InMemoryEventStore::new();
    let config = ActorConfig {
        snapshots: aether_actor::SnapshotPolicy::EveryEvents(4),
        ..ActorConfig::default()
    };
    let actors = spawn(&store, config.clone());
    let quinn = id("quinn");
    let split_id = CommandId::generate();
    let split = actors
        .ask_with(
            &quinn,
            Command::Split { cents: 9, parts: 3 },
            AskOptions::default().command_id(split_id.clone()),
        )
        .await
        .unwrap();
    for cents in 1..=5 {
        actors
            .ask(&quinn, Command::Deposit { cents })
            .await
            .unwrap();
    }
    actors.shutdown().await;
    let stream = actors.stream_id(&quinn).unwrap();
    let saved = store.latest_snapshot(&stream).await.unwrap().unwrap();
    assert_eq!(saved.version, 8);
    // The object form, built from the stored events (one object per command).
    let mut commands: Vec<Value> = Vec::new();
    for event in history(&actors, &quinn).await {
        let command = event.command_id.clone().unwrap();
        let reply: Option<Value> = event
            .metadata
            .get("aetherReply")
            .map(|r| serde_json::from_str(r).unwrap());
        match commands.last_mut() {
            Some(last) if last["id"] == command.as_str() => {
                last["written"]["last"] = json!(event.version);
                last["version"] = json!(event.version);
                last["reply"] = json!(reply);
            }
            _ => commands.push(json!({
                "id": command,
                "written": { "first": event.version, "last": event.version },
                "version": event.version,
                "reply": reply,
            })),
        }
    }
    assert_eq!(commands.len(), 6);
    let old = json!({ "state": saved.state["state"].clone(), "commands": commands });
    store
        .save_snapshot(ActorSnapshot::new(stream.clone(), 8, old))
        .await
        .unwrap();

    let restarted = spawn(&store, config);
    assert_eq!(balance(&restarted, &quinn).await, 24);
    let again = restarted
        .ask_with(
            &quinn,
            Command::Split { cents: 9, parts: 3 },
            AskOptions::default().command_id(split_id),
        )
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(
        (again.reply, again.written, again.version),
        (split.reply, split.written, 3)
    );
    assert_eq!(history(&restarted, &quinn).await.len(), 8);
    // Four more events: a new snapshot at 12, its index in the compact form.
    for cents in [1, 1, 1, 1] {
        restarted
            .ask(&quinn, Command::Deposit { cents })
            .await
            .unwrap();
    }
    restarted.shutdown().await;
    let next = store.latest_snapshot(&stream).await.unwrap().unwrap();
    assert_eq!(next.version, 12);
    let entries = next.state["commands"].as_array().unwrap();
    assert_eq!(entries.len(), 10);
    assert_eq!(entries[0], json!([split.command_id.as_str(), 3, 3, "9"]));
}

/// Queries to an idle actor are answered from the state it lends its mailbox, without the hop
/// to its task; each still sees every message sent before it. Here a tell is queued but not
/// yet handled when the query comes (one thread: the actor cannot run in between).
#[tokio::test(flavor = "current_thread")]
async fn a_query_sees_the_tells_sent_before_it() {
    let store = InMemoryEventStore::new();
    let actors = spawn(&store, ActorConfig::default());
    let ann = id("ann");
    for i in 1..=200u64 {
        actors
            .tell(&ann, Command::Deposit { cents: 1 })
            .await
            .unwrap();
        assert_eq!(balance(&actors, &ann).await, i);
    }
    assert_eq!(actors.stats().queries, 200);
}

/// A query sent while the actor handles a command waits for it (the state the actor lent
/// while idle is back with it), and sees its effect.
#[tokio::test(flavor = "current_thread")]
async fn a_query_waits_for_the_command_being_handled() {
    let store = GatedStore::closed();
    let actors = spawn(&store, ActorConfig::default());
    let bo = id("bo");
    // Active and idle (a query stores nothing: the gate does not hold it).
    assert_eq!(balance(&actors, &bo).await, 0);
    let busy = tokio::spawn({
        let (actors, bo) = (actors.clone(), bo.clone());
        async move { actors.ask(&bo, Command::Deposit { cents: 2 }).await }
    });
    store.until_waiting(1).await;
    let query = tokio::spawn({
        let (actors, bo) = (actors.clone(), bo.clone());
        async move { balance(&actors, &bo).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        !query.is_finished(),
        "answered while the actor was handling a command"
    );
    store.open();
    busy.await.unwrap().unwrap();
    assert_eq!(query.await.unwrap(), 2);
}
