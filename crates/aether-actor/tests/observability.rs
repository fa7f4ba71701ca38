//! Metrics through the `metrics` crate, and one `tracing` span per command carrying the actor
//! id and the command id.

#[allow(dead_code)]
#[path = "support/bank.rs"]
mod bank;
#[allow(dead_code)]
#[path = "support/scenarios.rs"]
mod scenarios;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aether_actor::{ActorConfig, AskOptions, CommandId};
use aether_core::InMemoryEventStore;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

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

/// Records the fields of every span named `aether.actor.command`.
#[derive(Default, Clone)]
struct Spans(Arc<Mutex<Vec<HashMap<String, String>>>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Subscriber for Spans {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut spans = self.0.lock().unwrap();
        if span.metadata().name() == "aether.actor.command" {
            let mut fields = HashMap::new();
            span.record(&mut Fields(&mut fields));
            spans.push(fields);
        }
        Id::from_u64(spans.len() as u64 + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn each_command_runs_in_a_span_with_its_actor_and_command_id() {
    let spans = Spans::default();
    let command_id = CommandId::new("cmd-42").unwrap();
    tracing::subscriber::with_default(spans.clone(), || {
        current_thread().block_on(async {
            let actors = spawn(&InMemoryEventStore::new(), ActorConfig::default());
            let options = AskOptions::default().command_id(command_id.clone());
            actors
                .ask_with(&id("zoe"), Command::Deposit { cents: 1 }, options)
                .await
                .unwrap();
            actors.shutdown().await;
        });
    });
    let recorded = spans.0.lock().unwrap();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let fields = &recorded[0];
    assert_eq!(fields["actor_id"], "zoe");
    assert_eq!(fields["command_id"], "cmd-42");
    assert_eq!(fields["actor_type"], "account");
    assert_eq!(fields["namespace"], "bank");
}
