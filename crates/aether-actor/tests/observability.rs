//! Metrics through the `metrics` crate. (The span per command is checked in `spans.rs`, a
//! binary of its own.)

#[allow(dead_code)]
#[path = "support/bank.rs"]
mod bank;
#[allow(dead_code)]
#[path = "support/scenarios.rs"]
mod scenarios;

use std::collections::HashMap;

use aether_actor::{ActorConfig, AskOptions, CommandId};
use aether_core::InMemoryEventStore;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

use bank::Command;
use scenarios::{id, spawn};

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn metrics_are_emitted_through_the_metrics_crate() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // Handles are registered when the runtime is created.
    let actors = metrics::with_local_recorder(&recorder, || {
        spawn(&InMemoryEventStore::new(), ActorConfig::default())
    });
    current_thread().block_on(async {
        let a = id("a");
        let command_id = CommandId::generate();
        let options = AskOptions::default().command_id(command_id);
        actors
            .ask_with(&a, Command::Deposit { cents: 1 }, options.clone())
            .await
            .unwrap();
        actors
            .ask_with(&a, Command::Deposit { cents: 1 }, options)
            .await
            .unwrap();
        actors
            .ask(&a, Command::Withdraw { cents: 5 })
            .await
            .unwrap_err();
        actors.query(&a, bank::Query::Balance).await.unwrap();
        actors.shutdown().await;
    });
    let values: HashMap<String, (Vec<(String, String)>, DebugValue)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let labels = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.key().name().to_owned(), (labels, value))
        })
        .collect();
    let counter = |name: &str| match &values[name].1 {
        DebugValue::Counter(n) => *n,
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(counter("aether_actor_commands_total"), 3);
    assert_eq!(counter("aether_actor_duplicates_total"), 1);
    assert_eq!(counter("aether_actor_rejections_total"), 1);
    assert_eq!(counter("aether_actor_activations_total"), 1);
    assert_eq!(counter("aether_actor_passivations_total"), 1);
    assert_eq!(counter("aether_actor_conflicts_total"), 0);
    assert_eq!(counter("aether_actor_queries_total"), 1);
    assert_eq!(counter("aether_actor_overloaded_total"), 0);
    let samples = |name: &str| match &values[name].1 {
        DebugValue::Histogram(samples) => samples.len(),
        other => panic!("{name}: {other:?}"),
    };
    // One time per command decided (the duplicate too), one per query.
    assert_eq!(samples("aether_actor_command_seconds"), 3);
    assert_eq!(samples("aether_actor_query_seconds"), 1);
    assert_eq!(
        values["aether_actor_active"].1,
        DebugValue::Gauge(0.0.into())
    );
    match &values["aether_actor_activation_seconds"].1 {
        DebugValue::Histogram(samples) => assert_eq!(samples.len(), 1),
        other => panic!("{other:?}"),
    }
    let labels = &values["aether_actor_commands_total"].0;
    assert!(
        labels.contains(&("namespace".into(), "bank".into())),
        "{labels:?}"
    );
    assert!(
        labels.contains(&("actor_type".into(), "account".into())),
        "{labels:?}"
    );
}
