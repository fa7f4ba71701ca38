//! The scenarios every store must pass (`support/scenarios.rs`), on JetStream: each test on its
//! own `nats-server` (started by the testkit harness) and its own namespace. Needs
//! `nats-server` >= 2.12; fails (never skips) with the install command when it is missing.

#[allow(dead_code)]
#[path = "support/bank.rs"]
mod bank;
#[allow(dead_code)]
#[path = "support/model.rs"]
mod model;
#[allow(dead_code)]
#[path = "support/relay.rs"]
mod relay;
#[allow(dead_code)]
#[path = "support/scenarios.rs"]
mod scenarios;
#[allow(dead_code)]
#[path = "support/talk.rs"]
mod talk;

use aether_core::Namespace;
use aether_nats::JetStreamEventStore;
use aether_testkit::nats_server::NatsServer;

/// A store on a namespace no other test uses.
async fn fresh_store(server: &NatsServer) -> JetStreamEventStore {
    let namespace = Namespace::new(format!("actors-{}", uuid::Uuid::now_v7().simple())).unwrap();
    JetStreamEventStore::connect(&server.url(), namespace)
        .await
        .unwrap_or_else(|e| panic!("open store at {}: {e}", server.url()))
}

macro_rules! on_jetstream {
    ($($name:ident $(($($arg:expr),*))?),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
                let store = fresh_store(&server).await;
                scenarios::$name(store $($(, $arg)*)?).await;
                drop(server);
            }
        )*
    };
}

on_jetstream! {
    retried_command_after_lost_reply,
    many_tasks_ask_one_actor(100),
    bad_input_fails_alone,
    activation_from_snapshot_and_tail,
    conflict_reloads,
    undecodable_event_fails_activation,
    retry_on_a_second_runtime_with_a_stale_view,
}

macro_rules! talk_on_jetstream {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
                let store = fresh_store(&server).await;
                talk::$name(store).await;
                drop(server);
            }
        )*
    };
}

talk_on_jetstream! {
    ask_effect_chain_is_exactly_once,
    ask_cycle_is_refused,
    reminder_wakes_a_passivated_actor,
}

/// The model-based property test (`support/model.rs`) on JetStream: fewer cases than on the
/// in-memory store (each is a few hundred round trips), one server, a namespace per case.
#[test]
fn actors_match_the_model() {
    use proptest::test_runner::{Config, TestRunner};

    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 16,
        ..Config::default()
    });
    let cases = (
        proptest::collection::vec(model::op(), 1..40),
        proptest::option::of(1u64..5),
    );
    let result = runner.run(&cases, |(ops, snapshots)| {
        runtime.block_on(async {
            let store = fresh_store(&server).await;
            model::run(store, ops, snapshots).await;
        });
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    drop(server);
}

/// A record on the actor's stream that is not an event (written by a foreign client):
/// activation fails with a typed error, nothing is decided or written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_record_fails_activation() {
    use aether_actor::{ActivationFailure, ActorConfig, ActorError, AskError};
    use aether_core::EventStore;

    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let store = fresh_store(&server).await;
    let actors = scenarios::spawn(&store, ActorConfig::default());
    let vic = scenarios::id("vic");
    actors
        .ask(&vic, bank::Command::Deposit { cents: 1 })
        .await
        .unwrap();
    assert!(actors.passivate(&vic).await);
    let stream = actors.stream_id(&vic).unwrap();
    let subject = aether_nats::naming::actor_subject(store.namespace(), &stream);
    // A request on a stream's subject is answered with the stream's ack: stored once it returns.
    store
        .client()
        .request(subject, "not an event".into())
        .await
        .expect("stored by the stream");
    let err = actors
        .ask(&vic, bank::Command::Deposit { cents: 1 })
        .await
        .unwrap_err();
    match err {
        AskError::Failed(ActorError::Activation(e)) => assert!(
            matches!(e.reason, ActivationFailure::UndecodableRecord { .. }),
            "{e}"
        ),
        other => panic!("{other}"),
    }
    let replay = store.events_with_errors(&stream, 0).await.unwrap();
    assert_eq!(
        (replay.events.len(), replay.errors.len()),
        (1, 1),
        "nothing written"
    );
    drop(server);
}
