//! One `tracing` span per command, carrying the actor id and the command id.
//!
//! Alone in its binary on purpose: tracing caches each callsite's interest process-wide, and a
//! test on another thread that hits the runtime's span callsites with no subscriber (as the
//! metrics test does) while this one installs its own can leave the span unrecorded — the
//! test failed 6 times in 20 beside the metrics test.

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
